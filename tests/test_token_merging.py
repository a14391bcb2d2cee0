import copy

import pytest
import torch
import torch.nn.functional as F

from zsvc_pl.model.backbone import load_clip
from zsvc_pl.model.token_merging import TokenMergingBlock, apply_token_merging, bipartite_merge


def test_the_two_most_similar_tokens_merge_into_their_size_weighted_mean():
    # tokens alternate between side a (even: class, 2, 4) and side b (odd); token 4 is nearly token 1
    x = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.1], [0.0, -1.0]]])
    size = torch.tensor([[[1.0], [3.0], [1.0], [1.0], [1.0], [1.0]]])
    out, new_size = bipartite_merge(x, x, size, r=1)
    assert out.shape == (1, 5, 2)
    assert torch.equal(out[0, 0], x[0, 0])  # the class token stays first, untouched
    assert torch.equal(out[0, 1], x[0, 2])  # the other side-a token is kept
    merged = (3 * x[0, 1] + x[0, 4]) / 4  # token 1 already stands for 3 tokens
    assert torch.allclose(out[0, 2], merged)  # side b follows side a's kept tokens
    assert new_size[0, :, 0].tolist() == [1.0, 1.0, 4.0, 1.0, 1.0]
    assert new_size.sum() == size.sum()


def test_the_class_token_is_never_merged_even_when_it_is_the_closest():
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [-1.0, 0.2]]])
    out, size = bipartite_merge(x, x, torch.ones(1, 5, 1), r=1)
    assert torch.equal(out[0, 0], x[0, 0]) and size[0, 0, 0] == 1


def test_r_zero_leaves_a_block_exactly_as_it_was():
    visual = load_clip("demo", "demo").model.visual.eval()
    block = visual.transformer.resblocks[0]
    x = torch.randn(2, 65, 128)

    class Sizes:
        size = None

    wrapped = TokenMergingBlock(block, 0, Sizes())
    with torch.inference_mode():
        assert torch.allclose(wrapped(x), block(x), atol=1e-5)


def test_merging_shrinks_the_tokens_and_keeps_the_embedding_close():
    torch.manual_seed(0)
    model = load_clip("demo", "demo").model.eval()
    merged = copy.deepcopy(model)
    apply_token_merging(merged.visual, 8)
    lengths: list[int] = []
    for block in merged.visual.transformer.resblocks:
        block.register_forward_hook(lambda m, args, out: lengths.append(out.shape[1]))
    frames = torch.rand(4, 3, 64, 64)
    with torch.inference_mode():
        reference, fast = model.encode_image(frames), merged.encode_image(frames)
        again = merged.encode_image(frames)  # token sizes do not leak from one call into the next
    assert lengths[:4] == [57, 49, 41, 33]
    assert torch.equal(fast, again)
    assert not torch.allclose(fast, reference)
    assert F.cosine_similarity(fast, reference).min() > 0.9


def test_merging_is_refused_for_a_negative_r():
    with pytest.raises(ValueError, match="r must be >= 0"):
        apply_token_merging(load_clip("demo", "demo").model.visual, -1)


def test_the_feature_cache_tells_changed_image_towers_apart(monkeypatch, caplog):
    from zsvc_pl.model import create_model, image_tower

    plain = create_model("demo", "demo")
    assert plain.feature_identity == plain.identity
    monkeypatch.setattr(image_tower, "int8_matmul_speedup", lambda: 2.0)  # a CPU with int8 instructions
    changed = create_model("demo", "demo", token_merging=4, quantize=True)
    assert changed.identity == plain.identity  # same weights: checkpoints still match
    assert changed.feature_identity == plain.identity + "|tome4|int8"
    monkeypatch.setattr(image_tower, "int8_matmul_speedup", lambda: 0.02)  # one without: int8 would be slower
    kept = create_model("demo", "demo", quantize=True)
    assert kept.feature_identity == plain.identity and "quantize=True ignored" in caplog.text
    assert type(kept.backbone.visual.transformer.resblocks[0].mlp.c_fc.weight) is torch.nn.Parameter
