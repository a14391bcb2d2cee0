"""Checkpoints in other layouts, converted once to open_clip's: Hugging Face ``transformers`` CLIP folders.

A folder with ``config.json`` (``model_type: clip``) and ``model.safetensors`` or ``pytorch_model.bin`` becomes
an ``open_clip.CLIP`` with the same architecture (widths, depths, heads, MLP ratio, QuickGELU or GELU, context
length) and the same weights: q/k/v projections joined into ``in_proj``, projections transposed. The converted
state must fill the model exactly: a missing or unexpected key is an error that names it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

_RENAMES = [  # transformers -> open_clip, applied in order to each key (after the tower prefix)
    (r"^embeddings\.token_embedding\.weight$", "token_embedding.weight"),
    (r"^embeddings\.position_embedding\.weight$", "positional_embedding"),
    (r"^embeddings\.class_embedding$", "class_embedding"),
    (r"^embeddings\.patch_embedding\.weight$", "conv1.weight"),
    (r"^pre_layrnorm\.", "ln_pre."),
    (r"^post_layernorm\.", "ln_post."),
    (r"^final_layer_norm\.", "ln_final."),
    (r"^encoder\.layers\.(\d+)\.layer_norm1\.", r"transformer.resblocks.\1.ln_1."),
    (r"^encoder\.layers\.(\d+)\.layer_norm2\.", r"transformer.resblocks.\1.ln_2."),
    (r"^encoder\.layers\.(\d+)\.mlp\.fc1\.", r"transformer.resblocks.\1.mlp.c_fc."),
    (r"^encoder\.layers\.(\d+)\.mlp\.fc2\.", r"transformer.resblocks.\1.mlp.c_proj."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"transformer.resblocks.\1.attn.out_proj."),
]
_QKV = re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$")


class ConversionError(ValueError):
    """A checkpoint whose keys do not map onto the open_clip model; the message names them."""


def is_hf_clip_folder(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "clip"
    except (OSError, ValueError):
        return False


def open_clip_config(hf: dict) -> dict:
    """open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, ``quick_gelu``) from transformers'."""
    v, t = hf["vision_config"], hf["text_config"]
    acts = {v.get("hidden_act", "quick_gelu"), t.get("hidden_act", "quick_gelu")}
    if not acts <= {"quick_gelu", "gelu"} or len(acts) > 1:
        raise ConversionError(f"unsupported activation(s) {sorted(acts)}: open_clip offers quick_gelu or gelu")
    return {
        "embed_dim": hf["projection_dim"],
        "quick_gelu": acts == {"quick_gelu"},
        "vision_cfg": {"image_size": v["image_size"], "patch_size": v["patch_size"], "width": v["hidden_size"],
                       "layers": v["num_hidden_layers"], "head_width": v["hidden_size"] // v["num_attention_heads"],
                       "mlp_ratio": v["intermediate_size"] / v["hidden_size"]},
        "text_cfg": {"context_length": t["max_position_embeddings"], "vocab_size": t["vocab_size"],
                     "width": t["hidden_size"], "heads": t["num_attention_heads"], "layers": t["num_hidden_layers"],
                     "mlp_ratio": t["intermediate_size"] / t["hidden_size"]},
    }


def convert_hf_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers CLIP keys and tensors -> open_clip's (unknown keys are kept, to be reported)."""
    out, qkv = {}, {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue  # a buffer of indices, not a weight
        if key == "logit_scale":
            out[key] = value
            continue
        if key in ("text_projection.weight", "visual_projection.weight"):
            out["text_projection" if key.startswith("text") else "visual.proj"] = value.T.contiguous()
            continue
        tower, _, rest = key.partition(".")
        prefix = {"text_model": "", "vision_model": "visual."}.get(tower)
        m = _QKV.match(rest) if prefix is not None else None
        if m:
            qkv.setdefault((prefix, m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        if prefix is None:
            out[key] = value
            continue
        for pattern, repl in _RENAMES:
            rest, n = re.subn(pattern, repl, rest)
            if n:
                break
        out[prefix + rest] = value
    for (prefix, layer, kind), parts in qkv.items():
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat([parts[c] for c in "qkv"])
    return out


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ConversionError(f"{folder}: no model.safetensors or pytorch_model.bin beside config.json")


def load_hf_clip(folder: str | Path) -> tuple[nn.Module, int]:
    """An open_clip ``CLIP`` holding a transformers CLIP folder's weights, and its text context length."""
    import open_clip

    folder = Path(folder)
    cfg = open_clip_config(json.loads((folder / "config.json").read_text()))
    model = open_clip.CLIP(**cfg)
    state = convert_hf_state(_read_weights(folder))
    missing, unexpected = sorted(set(model.state_dict()) - set(state)), sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise ConversionError(f"{folder}: the converted checkpoint does not fit open_clip's CLIP: missing "
                              f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected "
                              f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    model.load_state_dict(state, strict=True)
    return model, cfg["text_cfg"]["context_length"]
