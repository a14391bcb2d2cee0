import torch

from tests.conftest import TINY_CONFIG
from zsvc_pl.model.backbone import load_clip
from zsvc_pl.model.text import PromptLearner, encode_prompts

LABELS = ["a red circle moving to the left", "ApplyEyeMakeup", "ride_horse"]


def test_ctx_init_prompt_equals_hand_made_prompt_exactly(tiny_ckpt):
    bb = load_clip(str(TINY_CONFIG), tiny_ckpt)
    learner = PromptLearner(bb.model, bb.tokenizer, ctx_init="a video of")
    hand = encode_prompts(bb.model, bb.tokenizer, [["a video of a red circle moving to the left."],
                                                    ["a video of apply eye makeup."], ["a video of ride horse."]])
    with torch.no_grad():
        learned = learner(LABELS)
    assert learner.n_ctx == 3
    assert torch.allclose(learned, hand, atol=1e-6)


def test_class_positions_and_class_specific_context(tiny_ckpt):
    bb = load_clip(str(TINY_CONFIG), tiny_ckpt)
    for position in ("end", "middle", "front"):
        learner = PromptLearner(bb.model, bb.tokenizer, n_ctx=4, class_position=position)
        ids, mask = learner._token_layout(["ride horse"])
        assert mask.sum() == 4
        assert learner(["ride horse", "jump"]).shape == (2, 32)
    specific = PromptLearner(bb.model, bb.tokenizer, n_ctx=2, class_names=["a", "b"], class_specific=True)
    assert specific.ctx.shape == (2, 2, 32)


def test_context_vectors_receive_gradients_and_backbone_does_not(tiny_ckpt):
    bb = load_clip(str(TINY_CONFIG), tiny_ckpt)
    learner = PromptLearner(bb.model, bb.tokenizer, n_ctx=2)
    learner(["jump", "run"]).sum().backward()
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in bb.model.parameters())
    assert [n for n, _ in learner.named_parameters()] == ["ctx"]


def test_text_tower_runs_only_up_to_the_longest_prompt_with_the_same_features():
    bb = load_clip("demo", "demo")
    model = bb.model.eval()
    prompts = [["a video of a red circle.", "a red circle"], ["a blue square moving left quickly, then up."]]
    seen: list[int] = []
    hook = model.transformer.register_forward_pre_hook(lambda m, args, kwargs: seen.append(args[0].shape[1]),
                                                       with_kwargs=True)
    fast = encode_prompts(model, bb.tokenizer, prompts)
    hook.remove()
    with torch.no_grad():
        full = [torch.nn.functional.normalize(model.encode_text(bb.tokenizer(group)), dim=-1).mean(0)
                for group in prompts]
    reference = torch.nn.functional.normalize(torch.stack(full), dim=-1)
    longest = max(len(bb.tokenizer.encode(p)) for group in prompts for p in group) + 2  # with start and end
    assert seen == [longest] and longest < bb.context_length
    assert torch.allclose(fast, reference, atol=1e-5)


def test_learned_prompts_follow_their_context_vectors_after_the_word_embeddings_are_cached(tiny_ckpt):
    bb = load_clip(str(TINY_CONFIG), tiny_ckpt)
    learner = PromptLearner(bb.model, bb.tokenizer, ctx_init="a video of")
    lookups: list[int] = []
    hook = bb.model.token_embedding.register_forward_hook(lambda m, args, out: lookups.append(1))
    before = learner(LABELS).detach()
    with torch.no_grad():
        learner.ctx.mul_(-1.5)
    after = learner(LABELS).detach()
    hook.remove()
    fresh = PromptLearner(bb.model, bb.tokenizer, ctx_init="a video of")
    with torch.no_grad():
        fresh.ctx.copy_(learner.ctx)
        expected = fresh(LABELS)
    assert len(lookups) == 1  # the frozen table is read once per label set
    assert not torch.allclose(before, after, atol=1e-3)
    assert torch.equal(after, expected)
