import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zsvc_pl.model.backbone import load_clip
from zsvc_pl.model.image_tower import FrameEncoder, LinearAttention, linear_attention, quantize_image_tower


def _tower_and_frames(n: int = 10):
    torch.manual_seed(0)
    model = load_clip("demo", "demo").model.eval()
    return model, torch.rand(n, 3, 64, 64)


def test_linear_attention_computes_what_multihead_attention_computes():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(48, 4, batch_first=True).eval()
    x = torch.randn(3, 7, 48)
    mask = torch.zeros(7, 7).masked_fill(torch.triu(torch.ones(7, 7, dtype=torch.bool), 1), float("-inf"))
    ours = LinearAttention(mha)
    for m in (None, mask):
        expected = mha(x, x, x, need_weights=False, attn_mask=m)[0]
        assert torch.allclose(ours(x, x, x, need_weights=False, attn_mask=m)[0], expected, atol=1e-5)
    seq_first = nn.MultiheadAttention(48, 4).eval()
    xt = x.transpose(0, 1)
    assert torch.allclose(LinearAttention(seq_first)(xt)[0], seq_first(xt, xt, xt, need_weights=False)[0], atol=1e-5)


def test_the_converted_tower_gives_the_same_features_and_int8_reaches_every_projection():
    model, frames = _tower_and_frames()
    converted = copy.deepcopy(model)
    assert linear_attention(converted.visual) == 4  # the demo tower's four blocks
    with torch.inference_mode():
        reference = model.encode_image(frames)
        assert torch.allclose(converted.encode_image(frames), reference, atol=1e-5)
    assert quantize_image_tower(model)
    block = model.visual.transformer.resblocks[0]
    for layer in (block.attn.qkv, block.attn.out_proj, block.mlp.c_fc, block.mlp.c_proj):
        assert type(layer.weight) is not nn.Parameter  # int8 tensors, not fp32 weights
    with torch.inference_mode():
        quantized = model.encode_image(frames)
    assert not torch.allclose(quantized, reference, atol=1e-4)  # the int8 layers really run
    assert F.cosine_similarity(quantized, reference).min() > 0.995


def test_frames_go_through_in_even_chunks_with_the_same_features():
    model, frames = _tower_and_frames(10)
    calls = []
    model.visual.register_forward_hook(lambda m, args, out: calls.append(len(args[0])))
    encoder = FrameEncoder(model, chunk=4)
    with torch.inference_mode():
        chunked = encoder(frames)
        assert calls == [4, 3, 3]  # ceil(10 / 4) = 3 chunks, as even as they come
        assert torch.allclose(chunked, model.encode_image(frames), atol=1e-5)
    assert FrameEncoder(model).chunk == 64  # demo tower: 65 tokens (8 x 8 patches, class); 8192 // 65 = 126 -> 64


def test_a_compiled_tower_sees_one_input_size_and_gives_the_same_features():
    model, frames = _tower_and_frames(10)
    encoder = FrameEncoder(model, compiled=True, chunk=6)
    sizes = []
    encoder.compiled = lambda x: (sizes.append(len(x)), model.visual(x))[1]  # the compiled call, observed
    with torch.inference_mode():
        first = encoder(frames[:4])  # the first call fixes the size: 4 frames
        rest = encoder(frames)  # 10 frames: 4 + 4 + 2 padded to 4
        reference = model.encode_image(frames)
    assert sizes == [4, 4, 4, 4] and encoder.compiled_frames == 4
    assert torch.allclose(first, reference[:4], atol=1e-5) and torch.allclose(rest, reference, atol=1e-5)


def test_compile_tower_traces_the_demo_tower_and_keys_the_cache_apart(monkeypatch):
    import functools

    from zsvc_pl.model import create_model

    # Dynamo's graph capture as with Inductor, run eagerly: seconds instead of a C++ build on the CPU
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    plain, compiled = create_model("demo", "demo"), create_model("demo", "demo", compile_tower=True)
    assert compiled.feature_identity == plain.identity + "|compiled" and compiled.identity == plain.identity
    video = torch.randint(0, 255, (3, 1, 4, 3, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        a, b = plain.frame_features(video), compiled.frame_features(video)
    assert compiled.encode_frames.compiled_frames == 12 and torch.allclose(a, b, atol=1e-5)


def test_int8_reaches_the_projections_of_token_merging_blocks_too():
    from zsvc_pl.model.token_merging import apply_token_merging

    model, frames = _tower_and_frames()
    apply_token_merging(model.visual, 4)
    with torch.inference_mode():
        merged = model.encode_image(frames)
    assert quantize_image_tower(model)
    assert type(model.visual.transformer.resblocks[0].block.attn.qkv.weight) is not nn.Parameter
    with torch.inference_mode():
        assert F.cosine_similarity(model.encode_image(frames), merged).min() > 0.99


def test_auto_never_picks_a_slow_or_inexact_tower():
    from zsvc_pl.model.tower_choice import pick

    def fig(speed, cosine=1.0):
        return {"frames_per_s": speed, "min_cosine": cosine}

    assert pick({"fp32": fig(100), "int8": fig(30)}) == "fp32"  # slower (an AVX2 CPU's int8)
    assert pick({"fp32": fig(100), "int8-compiled": fig(400, 0.98)}) == "fp32"  # fast, but below cosine 0.999
    assert pick({"fp32": fig(100), "compiled": fig(105)}) == "fp32"  # within timing noise
    assert pick({"fp32": fig(100), "compiled": fig(150), "int8-compiled": fig(320, 0.9995)}) == "int8-compiled"


def test_auto_measures_once_per_machine_and_measures_again_after_a_change(monkeypatch, tmp_path):
    from zsvc_pl.model import tower_choice

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def measure(model, image_size, device, towers):
        calls.append(towers)
        return {"fp32": {"frames_per_s": 10, "min_cosine": 1.0}, "compiled": {"frames_per_s": 30, "min_cosine": 1.0}}

    monkeypatch.setattr(tower_choice, "measure", measure)
    monkeypatch.setattr(tower_choice, "candidates", lambda device: ["fp32", "compiled"])
    model = load_clip("demo", "demo")
    choose = lambda: tower_choice.choose_tower(model.model, model.identity, 64, torch.device("cpu"))[0]  # noqa: E731
    assert choose() == "compiled" and len(calls) == 1
    assert choose() == "compiled" and len(calls) == 1  # kept: the next run starts at once
    assert "compiled" in (tmp_path / "zsvc_pl" / "towers.json").read_text()
    real = tower_choice.machine()
    monkeypatch.setattr(tower_choice, "machine", lambda: {**real, "torch": "9.9.9"})
    assert choose() == "compiled" and len(calls) == 2  # another torch: measured again
    monkeypatch.setattr(tower_choice, "machine", lambda: {**real, "flags": ["avx512_vnni"]})
    choose()
    assert len(calls) == 3  # other CPU instructions: again
    (tmp_path / "zsvc_pl" / "towers.json").write_text("{not json")
    monkeypatch.setattr(tower_choice, "machine", lambda: real)
    assert choose() == "compiled" and len(calls) == 4  # a damaged cache file costs a measurement, nothing else


def test_auto_measures_the_demo_tower_and_the_chosen_tower_keys_the_feature_cache(monkeypatch, tmp_path):
    from zsvc_pl.model import create_model, tower_choice

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(tower_choice, "candidates", lambda device: ["fp32", "int8"])  # no compiling in the suite
    bb = load_clip("demo", "demo")
    figures = tower_choice.measure(bb.model, bb.image_size, torch.device("cpu"), ["fp32", "int8"])
    assert figures["fp32"]["min_cosine"] == 1.0 and figures["int8"]["min_cosine"] > 0.9
    auto = create_model("demo", "demo", tower="auto")
    chosen = json.loads((tmp_path / "zsvc_pl" / "towers.json").read_text())
    (entry,) = chosen.values()
    assert set(entry["figures"]) == {"fp32", "int8"} and entry["tower"] in ("fp32", "int8")
    assert auto.image_variant == ("|int8" if entry["tower"] == "int8" else "")
    compiled = create_model("demo", "demo", tower="compiled")  # compiled on its first call, not here
    assert compiled.image_variant == "|compiled" and compiled.feature_identity != auto.feature_identity
    with pytest.raises(ValueError, match="tower must be one of fp32, compiled, int8, int8-compiled, auto"):
        create_model("demo", "demo", tower="fast")


def test_auto_on_a_cpu_without_fast_int8_keeps_fp32_without_timing_anything(monkeypatch, tmp_path):
    from zsvc_pl.model import tower_choice

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(tower_choice, "int8_matmul_speedup", lambda: 0.05)  # an AVX2-only CPU
    monkeypatch.setattr(tower_choice, "measure", lambda *a, **k: pytest.fail("nothing to compare"))
    model = load_clip("demo", "demo")
    assert tower_choice.choose_tower(model.model, model.identity, 64, torch.device("cpu"))[0] == "fp32"
    assert tower_choice.candidates(torch.device("cpu")) == ["fp32"]
