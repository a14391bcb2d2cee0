import time

import pytest
import torch

from tests.conftest import TINY_CONFIG
from zsvc_pl.model.backbone import BackboneLoadError, load_clip


def test_loads_config_json_and_local_checkpoint(tiny_ckpt):
    bb = load_clip(str(TINY_CONFIG), tiny_ckpt)
    assert bb.image_size == 32 and bb.embed_dim == 32 and bb.context_length == 24
    assert bb.identity.startswith("tiny-clip:weights=")
    assert not bb.model.training
    assert not any(p.requires_grad for p in bb.model.parameters())
    saved = torch.load(tiny_ckpt, weights_only=True)
    assert torch.equal(bb.model.state_dict()["text_projection"], saved["text_projection"])


def test_random_weights_only_when_asked_and_with_a_warning():
    with pytest.warns(UserWarning, match="random weights"):
        bb = load_clip(str(TINY_CONFIG), "none")
    assert bb.identity == "tiny-clip:random"


def test_missing_weights_fail_fast_with_instructions(tmp_path):
    start = time.perf_counter()
    with pytest.raises(BackboneLoadError) as err:
        load_clip("ViT-B-32", "openai", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 30
    msg = str(err.value)
    assert "\n" not in msg  # one line
    assert "ViT-B-32" in msg and "openai" in msg and str(tmp_path) in msg and "--model.pretrained /path/to" in msg
    assert "HF_HUB_OFFLINE" not in msg  # the project sets that itself; the user has nothing to unset


def test_unknown_tag_and_model_are_explained(tmp_path):
    with pytest.raises(BackboneLoadError, match="neither a pretrained tag"):
        load_clip("ViT-B-32", "no_such_tag")
    with pytest.raises(BackboneLoadError, match="unknown open_clip model"):
        load_clip("ViT-Z-99", "none")
    with pytest.raises(BackboneLoadError, match="config file not found"):
        load_clip(str(tmp_path / "missing.json"), "none")


def test_a_weights_file_of_another_architecture_is_named(tiny_ckpt):
    with pytest.raises(BackboneLoadError, match=f"could not load the weights file {tiny_ckpt} into model 'demo'"):
        load_clip("demo", tiny_ckpt)


def test_identity_follows_the_weights_not_the_file(tiny_ckpt, tmp_path):
    from safetensors.torch import save_file

    sd = torch.load(tiny_ckpt, weights_only=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "same.safetensors")
    sd["logit_scale"] = sd["logit_scale"] + 1
    torch.save(sd, tmp_path / "other.pt")
    a = load_clip(str(TINY_CONFIG), tiny_ckpt).identity
    assert load_clip(str(TINY_CONFIG), str(tmp_path / "same.safetensors")).identity == a
    assert load_clip(str(TINY_CONFIG), str(tmp_path / "other.pt")).identity != a


def test_int8_image_tower_keeps_the_embeddings_without_deprecated_calls():
    import warnings

    import torch.nn.functional as F

    from zsvc_pl.model.image_tower import quantize_image_tower

    torch.manual_seed(0)
    fp32 = load_clip("demo", "demo").model.eval()
    frames = torch.rand(6, 3, 64, 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        int8 = load_clip("demo", "demo").model.eval()
        assert quantize_image_tower(int8)
        with torch.inference_mode():
            reference, quantized = fp32.encode_image(frames), int8.encode_image(frames)
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert type(int8.visual.transformer.resblocks[0].mlp.c_fc.weight) is not torch.nn.Parameter
    assert not torch.equal(reference, quantized)  # the int8 tower really runs
    assert F.cosine_similarity(reference, quantized).min() > 0.995


def _tiny_transformers_clip(folder):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                           num_attention_heads=4), projection_dim=24)
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(folder)
    return model


def test_a_transformers_clip_folder_gives_the_same_embeddings_as_transformers(tmp_path):
    hf = _tiny_transformers_clip(tmp_path / "hf-clip")
    bb = load_clip("ViT-B-32", str(tmp_path / "hf-clip"))  # the folder's own architecture is used
    assert bb.identity.startswith("transformers:hf-clip:weights=") and bb.image_size == 32 and bb.embed_dim == 24
    pixels = torch.randn(3, 3, 32, 32)
    ids = bb.tokenizer(["a red circle", "a video of a blue square moving to the left"])
    with torch.no_grad():
        image_hf, text_hf = hf.get_image_features(pixel_values=pixels), hf.get_text_features(input_ids=ids)
        image_hf = getattr(image_hf, "pooler_output", image_hf)
        text_hf = getattr(text_hf, "pooler_output", text_hf)
        assert torch.allclose(bb.model.encode_image(pixels), image_hf, atol=1e-5)
        assert torch.allclose(bb.model.encode_text(ids), text_hf, atol=1e-5)


def test_a_transformers_checkpoint_that_does_not_fit_names_the_keys(tmp_path):
    from safetensors.torch import load_file, save_file

    from zsvc_pl.model.converters import ConversionError

    _tiny_transformers_clip(tmp_path / "hf-clip")
    weights = tmp_path / "hf-clip" / "model.safetensors"
    state = load_file(str(weights))
    state["vision_model.extra_head.weight"] = torch.zeros(2)
    del state["text_model.final_layer_norm.weight"]
    save_file(state, str(weights))
    with pytest.raises(ConversionError, match=r"missing \['ln_final.weight'\], unexpected "
                                              r"\['visual.extra_head.weight'\]"):
        load_clip("ViT-B-32", str(tmp_path / "hf-clip"))


def test_a_hub_tokenizer_offline_fails_in_one_line_and_loads_from_a_local_folder(tmp_path):
    """SigLIP-style configs name a tokenizer on the Hugging Face hub (``hf_tokenizer_name``): offline it is one
    line saying how to provide it (not a traceback after a minute of retries); in ``cache_dir/<hub name>`` it
    loads with no network."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from zsvc_pl.model import BackboneLoadError, create_model

    words = ["[PAD]", "[UNK]", "a", "photo", "of", "red", "circle", "blue", "square"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(
        tmp_path / "cache" / "zsvc-test" / "tiny-tokenizer")
    config = tmp_path / "tiny-hubtok.json"
    config.write_text(json.dumps({
        "embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32,
                                        "mlp_ratio": 2.0, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 16, "width": 32, "heads": 2, "layers": 1, "mlp_ratio": 2.0,
                     "hf_tokenizer_name": "zsvc-test/tiny-tokenizer", "tokenizer_kwargs": {"clean": "canonicalize"}}}))
    with pytest.raises(BackboneLoadError) as e:
        create_model(str(config), "none")
    message = str(e.value)
    assert len(message.splitlines()) == 1 and "zsvc-test/tiny-tokenizer" in message and "--model.cache_dir" in message
    model = create_model(str(config), "none", cache_dir=str(tmp_path / "cache"))
    tokens = model.tokenizer(["a red circle", "a blue square"])
    assert tokens.shape == (2, 16) and tokens[0, :3].tolist() == [2, 5, 6] and tokens[1, :3].tolist() == [2, 7, 8]
    assert model.text_features(["a red circle", "a blue square"]).shape == (2, 32)


@pytest.fixture(scope="module")
def pe_core():
    """Meta's Perception Encoder, the smallest size, random weights: a ``CustomTextCLIP`` (its text tower is
    ``model.text``) with open_clip's tokenizer and a 32-token context."""
    torch.manual_seed(0)
    return load_clip("PE-Core-T-16-384", "none")


def test_coop_prompts_go_through_a_custom_text_tower(pe_core):
    from zsvc_pl.labels import humanize_label
    from zsvc_pl.model.text import PromptLearner, encode_prompts

    model = pe_core.model.eval()
    assert not hasattr(model, "token_embedding") and hasattr(model.text, "token_embedding")
    labels = ["riding a horse", "playing guitar", "PlayingDaf"]
    learner = PromptLearner(model, pe_core.tokenizer, ctx_init="a video of")
    with torch.no_grad():
        learned = learner(labels)
        hand = encode_prompts(model, pe_core.tokenizer, [[f"a video of {humanize_label(x)}."] for x in labels])
    assert learned.shape == (3, model.text.text_projection.shape[1])
    assert torch.allclose(learned, hand, atol=1e-6)  # before training: exactly the hand-made prompt
    with pytest.raises(ValueError, match="needs open_clip's own tokenizer"):
        PromptLearner(model, object())  # SigLIP's Hugging Face tokenizers: one line, not a traceback


def test_a_coop_step_on_pe_core_moves_the_context_and_nothing_frozen(pe_core, monkeypatch):
    from zsvc_pl.model import create_model
    from zsvc_pl.model import video_text

    monkeypatch.setattr(video_text, "load_clip", lambda *a, **k: pe_core)  # built once for the module
    names = ["riding a horse", "playing guitar"]
    model = create_model("PE-Core-T-16-384", "none", n_ctx=4, class_names=names, temporal="transformer")
    frozen = {k: v.clone() for k, v in pe_core.model.text.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert model.prompt_learner.ctx.requires_grad and not any(p.requires_grad for p in pe_core.model.parameters())
    start = model.prompt_learner.ctx.detach().clone()
    optimizer = torch.optim.SGD(trainable, lr=1.0)
    frames = torch.randn(2, 1, 2, pe_core.model.text.text_projection.shape[1])
    logits = model.video_logits(torch.nn.functional.normalize(frames, dim=-1), model.text_features(names))[:, 0]
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    optimizer.step()
    assert not torch.equal(model.prompt_learner.ctx, start)  # learned
    assert all(torch.equal(v, pe_core.model.text.state_dict()[k]) for k, v in frozen.items())  # tower untouched
