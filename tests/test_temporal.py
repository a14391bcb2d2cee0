import torch
import torch.nn.functional as F

from zsvc_pl.model.temporal import MeanPool, TemporalTransformer, TextAttentionPool, build_temporal


def test_untrained_transformer_is_exactly_mean_pooling():
    torch.manual_seed(0)
    x = F.normalize(torch.randn(3, 8, 32), dim=-1)
    tt = TemporalTransformer(32, depth=2, num_heads=4, max_frames=16)
    assert torch.equal(tt(x), MeanPool()(x))


def test_transformer_sees_order_once_trained():
    torch.manual_seed(0)
    tt = TemporalTransformer(16, num_heads=2, max_frames=8)
    torch.nn.init.normal_(tt.proj.weight, std=0.5)
    x = torch.randn(1, 6, 16)
    assert not torch.allclose(tt(x), tt(x.flip(1)))
    assert torch.allclose(MeanPool()(x), MeanPool()(x.flip(1)))


def test_transformer_accepts_more_frames_than_its_table():
    tt = TemporalTransformer(16, num_heads=2, max_frames=4)
    assert tt(torch.randn(2, 10, 16)).shape == (2, 16)


def test_text_attention_focuses_on_matching_frames():
    frames = torch.eye(4)[[0, 0, 0, 1]][None].float()  # three frames of class 0, one of class 1
    text = torch.eye(4)[:2]
    out = TextAttentionPool(temperature=0.01)(frames, text)
    assert out.shape == (1, 2, 4)
    assert torch.allclose(out[0, 1], torch.tensor([0.0, 1.0, 0.0, 0.0]), atol=1e-4)
    mean = frames.mean(1)[0]
    assert out[0, 1, 1] > mean[1]


def test_build_temporal_rejects_unknown():
    import pytest

    with pytest.raises(ValueError, match="unknown temporal"):
        build_temporal("lstm", 8)
