"""Checkpoints in OpenAI CLIP's key layout: OpenAI's own archives and the video-fine-tuned full-CLIP checkpoints
that keep its names. open_clip inherits OpenAI's names, so converting is finding the weights, removing the
wrappers around them and refusing what does not fit:

- OpenAI archive (``ViT-B-16.pt``): TorchScript; its state dict holds three scalars that are not weights
  (``input_resolution``, ``context_length``, ``vocab_size``). A plain state dict with those scalars (what
  ``python -m zsvc_pl.convert`` writes, and what OpenAI's ``clip.load`` also reads) is the same layout.
- ViFi-CLIP (``trainers/vificlip.py``, saved by ``utils/tools.py:epoch_saving``): ``{"model": state, "optimizer":
  ..., "config": <yacs CfgNode>}``; keys under ``module.`` (DDP): ``image_encoder.*`` (CLIP's image tower),
  ``text_encoder.{transformer,positional_embedding,ln_final,text_projection}``, ``logit_scale`` and
  ``prompt_learner.complete_text_embeddings`` (token embeddings of its training class names, not a weight).
  ViFi-CLIP never trains the token-embedding table and does not save it: it comes from the CLIP it started from.
  Its prompting variants add ``VPT``/``ctx`` tensors, which are named and refused.
- ActionCLIP (``utils/saving.py``): ``{"model_state_dict": CLIP state, "fusion_model_state_dict": ...}``; the
  fusion head is not converted (frame averaging, ActionCLIP's ``meanP``, is zsvc_pl's ``temporal: mean``).

Architecture comes from the weights' shapes with OpenAI's conventions (64-wide attention heads, QuickGELU).
Files are unpickled with the classes ``torch.load(weights_only=True)`` allows; any other class a checkpoint names
(ViFi-CLIP's config, TorchScript's modules) becomes a stand-in that keeps its state and is never imported or run,
so an OpenAI archive is read without TorchScript.
"""

from __future__ import annotations

import functools
import io
import pickle
import pickletools
import zipfile
from pathlib import Path

import torch
from torch import nn

from zsvc_pl.model.converters import ConversionError

NOT_WEIGHTS = ("input_resolution", "context_length", "vocab_size")  # scalars in OpenAI's archives
_CONTAINERS = ("model", "state_dict", "model_state", "model_state_dict")
_PREFIXES = ("module.", "model.")
_RENAMES = (("image_encoder.", "visual."), ("text_encoder.", ""))
_DERIVED = ("prompt_learner.complete_text_embeddings", "prompt_learner.token_prefix", "prompt_learner.token_suffix")
TOKEN_EMBEDDING = "token_embedding.weight"


def _pickle_strings(path: Path) -> set[str] | None:
    """The strings in a torch zip checkpoint's pickle, read without running it (``None``: not a torch zip)."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        pkl = next((n for n in z.namelist() if n.endswith("/data.pkl")), None)
        if pkl is None:
            return None
        data = z.read(pkl)
    return {arg for op, arg, _ in pickletools.genops(data) if isinstance(arg, str)}


def checkpoint_layout(path: str | Path) -> str | None:
    """``openai-jit``, ``openai``, ``vifi-clip`` or ``actionclip`` for a file in one of those layouts, else
    ``None`` (open_clip's own files and anything unknown, left to open_clip's loader)."""
    path = Path(path)
    if not path.is_file() or path.suffix == ".safetensors":
        return None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("/constants.pkl") for n in z.namelist()):
                return "openai-jit"
    strings = _pickle_strings(path) or set()
    if any(s.startswith(("image_encoder.", "module.image_encoder.")) for s in strings):
        return "vifi-clip"
    if "fusion_model_state_dict" in strings:
        return "actionclip"
    if "input_resolution" in strings and "visual.proj" in strings:
        return "openai"
    return None


class _Stub:
    """Stand-in for a class a checkpoint pickles besides tensors: keeps its state, runs nothing."""

    state: dict

    def __setstate__(self, state: object) -> None:
        self.__dict__.setdefault("state", {}).update(state if isinstance(state, dict) else {})

    def __setitem__(self, key: object, value: object) -> None:  # dict subclasses (a yacs CfgNode)
        self.__dict__.setdefault("state", {})[key] = value


class _Unpickler(pickle.Unpickler):
    """Builds tensors and the containers ``torch.load(weights_only=True)`` allows; any other class becomes a
    ``_Stub`` without being imported."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str) -> object:
        if f"{module}.{name}" in _allowed_globals():
            return super().find_class(module, name)
        return type(name, (_Stub,), {})

    def persistent_load(self, pid: tuple) -> torch.storage.TypedStorage:
        _, storage_type, key, _location, _numel = pid
        dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type._dtype  # .dtype warns
        raw = torch.UntypedStorage.from_buffer(self.archive.read(f"{self.prefix}/data/{key}"), dtype=torch.uint8)
        return torch.storage.TypedStorage(wrap_storage=raw, dtype=dtype, _internal=True)


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> frozenset[str]:
    from torch._weights_only_unpickler import _get_allowed_globals

    return frozenset(_get_allowed_globals())


def _load_pickle(path: Path) -> object:
    """A torch zip checkpoint or TorchScript archive, unpickled with ``_Unpickler``; older files through
    ``torch.load(weights_only=True)``."""
    if not zipfile.is_zipfile(path):
        return torch.load(path, map_location="cpu", weights_only=True)
    with zipfile.ZipFile(path) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        return _Unpickler(archive.read(pkl), archive, pkl[: -len("/data.pkl")]).load()


def _module_tensors(obj: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript module tree (each module a ``_Stub`` whose state holds its attributes)."""
    out = {}
    for name, value in (getattr(obj, "state", {}) if isinstance(obj, _Stub) else {}).items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _Stub):
            out.update(_module_tensors(value, f"{prefix}{name}."))
    return out


def _find_state(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    if isinstance(obj, dict):
        for key in _CONTAINERS:
            if isinstance(obj.get(key), dict):
                return _find_state(obj[key], path)
    keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise ConversionError(f"{path}: no model weights found (top level: {keys}); expected a state dict or one "
                          f"under {', '.join(_CONTAINERS)}")


def read_state(path: str | Path, layout: str) -> dict[str, torch.Tensor]:
    """A checkpoint's weights in OpenAI's key names, float32, with wrappers, prefixes and derived buffers removed
    (``layout``: what ``checkpoint_layout`` said of the file)."""
    path = Path(path)
    if layout == "openai-jit":
        state = _module_tensors(_load_pickle(path))
    else:
        state = _find_state(_load_pickle(path), path)
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    out = {}
    for key, value in state.items():
        if key in NOT_WEIGHTS or key in _DERIVED:
            continue
        for old, new in _RENAMES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value.float() if value.is_floating_point() else value
    return out


def _config(state: dict[str, torch.Tensor]) -> dict:
    """open_clip ``CLIP`` arguments for an OpenAI-layout ViT state (64-wide heads, QuickGELU)."""
    def count(prefix: str) -> int:
        return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})

    try:
        conv, text_width = state["visual.conv1.weight"], state["ln_final.weight"].shape[0]
        vision_width, patch = conv.shape[0], conv.shape[-1]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        return {"embed_dim": state["text_projection"].shape[1], "quick_gelu": True,
                "vision_cfg": {"image_size": patch * grid, "patch_size": patch, "width": vision_width,
                               "layers": count("visual.transformer.resblocks."), "head_width": 64},
                "text_cfg": {"context_length": state["positional_embedding"].shape[0],
                             "vocab_size": state[TOKEN_EMBEDDING].shape[0], "width": text_width,
                             "heads": max(text_width // 64, 1), "layers": count("transformer.resblocks.")}}
    except KeyError as missing:
        raise ConversionError(f"not a CLIP ViT in OpenAI's layout: no {missing} among its keys "
                              f"(only ViT image towers are converted)") from None


def model_from_state(state: dict[str, torch.Tensor], source: str) -> tuple[nn.Module, int]:
    """An open_clip ``CLIP`` holding ``state`` exactly, and its context length; a missing or extra key is an
    error that names it."""
    import open_clip

    cfg = _config(state)
    model = open_clip.CLIP(**cfg)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ConversionError(f"{source}: the checkpoint does not fit CLIP's layout: missing "
                              f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected "
                              f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    model.load_state_dict(state, strict=True)
    return model.eval(), cfg["text_cfg"]["context_length"]


def load_openai_layout(path: str | Path, layout: str,
                       base: dict[str, torch.Tensor] | None = None) -> tuple[nn.Module, int]:
    """Build the model a checkpoint in one of the layouts above holds (``layout``: ``checkpoint_layout``'s word
    for it). ``base``: the state of the CLIP a ViFi-CLIP checkpoint started from, for the token-embedding table
    it does not save."""
    state = read_state(path, layout)
    if TOKEN_EMBEDDING not in state and layout == "vifi-clip":
        if base is None or TOKEN_EMBEDDING not in base:
            raise ConversionError(f"{path} is a ViFi-CLIP checkpoint: it does not hold CLIP's token embedding "
                                  f"(ViFi-CLIP never trains it), which must come from the CLIP it started from")
        state[TOKEN_EMBEDDING] = base[TOKEN_EMBEDDING].float()
    return model_from_state(state, str(path))


def save_openai_layout(model: nn.Module, path: str | Path) -> None:
    """Write ``model``'s weights, float32, as an OpenAI-layout state dict (OpenAI's ``clip.load`` and open_clip's
    ``load_openai_model`` read it too, rounding to their float16 layout)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    state["input_resolution"] = torch.tensor(model.visual.image_size[0])
    state["context_length"] = torch.tensor(model.context_length)
    state["vocab_size"] = torch.tensor(model.vocab_size)
    torch.save(state, path)
