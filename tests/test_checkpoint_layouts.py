"""Checkpoints in the layouts the field publishes load as the same model: OpenAI archives, ViFi-CLIP, ActionCLIP.

Each test builds a tiny random CLIP in OpenAI's conventions (64-wide heads, QuickGELU), writes it the way that
project writes its files, and checks the loaded model's image and text embeddings against the original's.
"""

from __future__ import annotations

import sys
import types
import warnings

import open_clip
import pytest
import torch
from torch import nn

from tests.conftest import TINY_CONFIG
from zsvc_pl.convert import convert
from zsvc_pl.convert import main as convert_main
from zsvc_pl.model import BackboneLoadError, load_clip
from zsvc_pl.model.converters import ConversionError
from zsvc_pl.model.openai_layout import checkpoint_layout


def _clip(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return open_clip.CLIP(embed_dim=32, quick_gelu=True,
                          vision_cfg={"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 64},
                          text_cfg={"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1,
                                    "layers": 2}).eval()


def _fine_tuned(original: nn.Module) -> nn.Module:
    """``original`` with every weight but the token embedding moved, as video fine-tuning does."""
    tuned = _clip(0)
    tuned.load_state_dict(original.state_dict())
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if name != "token_embedding.weight":
                p.add_(0.05 * torch.randn_like(p))
    return tuned


def _same_embeddings(model: nn.Module, reference: nn.Module) -> None:
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 32, 32)
    ids = open_clip.tokenizer.SimpleTokenizer(context_length=16)(["a video of juggling", "sword fighting"])
    with torch.no_grad():
        assert torch.allclose(model.encode_image(pixels), reference.encode_image(pixels), atol=1e-5)
        assert torch.allclose(model.encode_text(ids), reference.encode_text(ids), atol=1e-5)


def _openai_archive(model: nn.Module, path) -> None:
    """A TorchScript file whose state dict is OpenAI's: CLIP's weights plus three scalars that are not."""
    root = nn.Module()
    state = dict(model.state_dict())
    state.update(input_resolution=torch.tensor(32), context_length=torch.tensor(16), vocab_size=torch.tensor(49408))
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module = root
        for part in parents:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_buffer(leaf, value.clone())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, but OpenAI's files are TorchScript
        torch.jit.script(root).save(str(path))


def _save_with_config_object(obj: dict, path) -> None:
    """torch.save as ViFi-CLIP does, with a pickled yacs ``CfgNode`` that the loading machine need not have."""
    yacs, config = types.ModuleType("yacs"), types.ModuleType("yacs.config")
    cfg_node = type("CfgNode", (dict,), {"__module__": "yacs.config"})
    config.CfgNode = cfg_node
    sys.modules.update({"yacs": yacs, "yacs.config": config})
    try:
        torch.save({**obj, "config": cfg_node(MODEL=cfg_node(ARCH="ViT-B/16"))}, path)
    finally:
        del sys.modules["yacs.config"], sys.modules["yacs"]


def _vifi_state(model: nn.Module, extra: dict | None = None) -> dict:
    """ViFi-CLIP's ``model.state_dict()`` under DDP: towers renamed, no token embedding, class-name buffer."""
    state = {"module.prompt_learner.complete_text_embeddings": torch.randn(4, 16, 64)}
    for key, value in model.state_dict().items():
        if key.startswith("visual."):
            state["module.image_encoder." + key[len("visual."):]] = value
        elif key == "logit_scale":
            state["module.logit_scale"] = value
        elif key != "token_embedding.weight" and not key.startswith("attn_mask"):
            state["module.text_encoder." + key] = value
    return {**state, **(extra or {})}


def test_an_openai_archive_loads_as_the_same_model(tmp_path):
    original = _clip(0)
    _openai_archive(original, tmp_path / "ViT-tiny.pt")
    assert checkpoint_layout(tmp_path / "ViT-tiny.pt") == "openai-jit"
    bb = load_clip("ViT-B-32", str(tmp_path / "ViT-tiny.pt"))  # the archive's own architecture is used
    assert bb.identity.startswith("openai-jit:ViT-tiny.pt:weights=") and bb.image_size == 32 and bb.embed_dim == 32
    _same_embeddings(bb.model, original)


def test_a_vifi_clip_checkpoint_converts_once_with_its_base(tmp_path, capsys):
    original = _clip(0)
    tuned = _fine_tuned(original)
    _openai_archive(original, tmp_path / "base.pt")
    ckpt = tmp_path / "vifi_clip_k400.pth"
    _save_with_config_object({"model": _vifi_state(tuned), "optimizer": {"state": {}}, "epoch": 10,
                              "max_accuracy": 0.5}, ckpt)
    assert checkpoint_layout(ckpt) == "vifi-clip"
    with pytest.raises(BackboneLoadError, match=r"ViFi-CLIP checkpoint.*python -m zsvc_pl.convert"):
        load_clip(str(TINY_CONFIG), str(ckpt))  # an architecture without OpenAI weights to take the base from
    assert convert_main([str(ckpt), "--out", str(tmp_path / "vifi.pt"), "--base", str(tmp_path / "base.pt")]) == 0
    assert "(vifi-clip)" in capsys.readouterr().out
    bb = load_clip("ViT-B-32", str(tmp_path / "vifi.pt"))
    assert bb.identity.startswith("openai:vifi.pt:weights=")
    _same_embeddings(bb.model, tuned)


def test_vifi_clip_prompt_tensors_and_missing_weights_are_named(tmp_path):
    original = _clip(0)
    _openai_archive(original, tmp_path / "base.pt")
    extra = {"module.prompt_learner.ctx": torch.zeros(2, 64),
             "module.image_encoder.transformer.resblocks.0.VPT_shallow": torch.zeros(2, 64)}
    _save_with_config_object({"model": _vifi_state(original, extra)}, tmp_path / "vl_prompting.pth")
    with pytest.raises(SystemExit) as exit_info:
        convert_main([str(tmp_path / "vl_prompting.pth"), "--out", str(tmp_path / "x.pt"),
                      "--base", str(tmp_path / "base.pt")])
    assert exit_info.value.code == 2
    state = _vifi_state(original)
    del state["module.image_encoder.ln_post.weight"]
    _save_with_config_object({"model": state}, tmp_path / "damaged.pth")
    with pytest.raises(ConversionError, match=r"missing \['visual.ln_post.weight'\]"):
        convert(tmp_path / "damaged.pth", tmp_path / "y.pt", base=str(tmp_path / "base.pt"))
    with pytest.raises(ConversionError, match=r"unexpected \['prompt_learner.ctx', "
                                              r"'visual.transformer.resblocks.0.VPT_shallow'\]"):
        convert(tmp_path / "vl_prompting.pth", tmp_path / "z.pt", base=str(tmp_path / "base.pt"))


def test_an_actionclip_checkpoint_loads_as_the_same_model(tmp_path):
    tuned = _fine_tuned(_clip(0))
    fusion = {"transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3, 1)}  # its temporal head: not used
    half = {k: v.half() for k, v in tuned.state_dict().items()}  # ActionCLIP trains CLIP in float16 on GPU
    torch.save({"epoch": 3, "model_state_dict": half, "fusion_model_state_dict": fusion,
                "optimizer_state_dict": {}}, tmp_path / "model_best.pt")
    assert checkpoint_layout(tmp_path / "model_best.pt") == "actionclip"
    bb = load_clip("ViT-B-32", str(tmp_path / "model_best.pt"))
    reference = _clip(0)
    reference.load_state_dict({k: v.float() for k, v in half.items()})
    _same_embeddings(bb.model, reference)


def test_open_clip_files_still_go_to_open_clip(tiny_ckpt):
    assert checkpoint_layout(tiny_ckpt) is None
