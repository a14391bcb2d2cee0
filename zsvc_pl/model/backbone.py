"""Frozen CLIP backbone: the one place that builds an open_clip model and resolves its weights.

``model_name`` is an open_clip architecture name (``ViT-B-32``), an ``hf-hub:`` id, or the path
to an open_clip model config JSON. ``pretrained`` is an open_clip tag (``openai``), a local
checkpoint file, ``"demo"`` for the weights shipped with this package, or ``None``/``"none"``
for random weights (with a warning). Missing weights on an offline machine fail at once.
"""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from zsvc_pl.model.converters import is_hf_clip_folder, load_hf_clip
from zsvc_pl.model.openai_layout import checkpoint_layout, load_openai_layout

ASSETS = Path(__file__).parents[1] / "assets"
DEMO_MODEL_CONFIG = ASSETS / "demo-clip.json"
DEMO_WEIGHTS = ASSETS / "demo-clip.safetensors"
DOWNLOAD_TIMEOUT_S = 20.0


class BackboneLoadError(RuntimeError):
    """The backbone could not be built; the message says what to do."""


@dataclass
class Backbone:
    """A frozen open_clip model with what the rest of the package needs to know about it."""

    model: nn.Module
    tokenizer: object
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    identity: str
    embed_dim: int
    context_length: int
    extra: dict = field(default_factory=dict)


def is_random(pretrained: str | None) -> bool:
    """True when ``pretrained`` asks explicitly for random weights."""
    return pretrained is None or str(pretrained).strip().lower() in ("", "none", "null", "random")


def _resolve_name(model_name: str) -> str:
    """Register a config JSON path with open_clip and return the architecture name to build."""
    import open_clip

    if model_name == "demo":
        model_name = str(DEMO_MODEL_CONFIG)
    path = Path(model_name)
    if path.suffix == ".json":
        if not path.is_file():
            raise BackboneLoadError(f"model config file not found: {model_name}")
        open_clip.add_model_config(path)
        return path.stem
    if not model_name.startswith("hf-hub:") and open_clip.get_model_config(model_name) is None:
        raise BackboneLoadError(
            f"unknown open_clip model '{model_name}'. Use one of open_clip.list_models() "
            f"(e.g. ViT-B-32, ViT-B-16, RN50), an 'hf-hub:org/name' id, or a path to a model config JSON."
        )
    return model_name


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the names and values of named tensors."""
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def weights_digest(model: nn.Module) -> str:
    """``state_digest`` of a model's weights: the same weights give the same digest whatever file format or
    container they were loaded from."""
    return state_digest(model.state_dict())


def _cache_locations(cache_dir: str | None) -> str:
    hf = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )
    return f"{cache_dir}" if cache_dir else f"{hf} (Hugging Face hub) and ~/.cache/clip (URL downloads)"


def _reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextmanager
def _download_guard(needs_download: bool):
    """Bound download time; when the hub is unreachable, let huggingface_hub look only in its cache
    (otherwise it retries for about half a minute before failing)."""
    from huggingface_hub import constants

    old_offline, old_timeout = constants.HF_HUB_OFFLINE, socket.getdefaulttimeout()
    if needs_download and not old_offline and not _reachable():
        constants.HF_HUB_OFFLINE = True
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old_offline
        socket.setdefaulttimeout(old_timeout)


def _create(name: str, pretrained: str | None, cache_dir: str | None, full_name: str) -> nn.Module:
    import open_clip

    needs_download = name.startswith("hf-hub:") or (pretrained is not None and not Path(pretrained).is_file())
    try:
        with _download_guard(needs_download):
            if name.startswith("hf-hub:"):
                return open_clip.create_model(name, cache_dir=cache_dir)
            return open_clip.create_model(name, pretrained=pretrained, cache_dir=cache_dir)
    except BackboneLoadError:
        raise
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if pretrained and Path(pretrained).is_file():
            raise BackboneLoadError(f"could not load the weights file {pretrained} into model '{full_name}' "
                                    f"({reason}): is it a checkpoint of that architecture?") from e
        if pretrained and "not a known tag" in str(e):
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise BackboneLoadError(
                f"'{pretrained}' is neither a pretrained tag of {full_name} nor an existing file. "
                f"Known tags: {tags or 'none'}. Pass a tag, a local checkpoint path, or 'none' for random weights."
            ) from e
        raise BackboneLoadError(
            f"the weights of '{full_name}' (pretrained '{pretrained}') are not in the cache "
            f"({_cache_locations(cache_dir)}) and could not be downloaded (offline?): download them on a machine "
            f"with internet access and pass the file (CLI: --model.pretrained /path/to/open_clip_model.safetensors; "
            f"Python: pretrained='/path/to/open_clip_model.safetensors'), or point cache_dir at a folder that "
            f"holds them"
        ) from e


def _vifi_base(name: str, cache_dir: str | None, model_name: str, checkpoint: str) -> dict[str, torch.Tensor]:
    """The weights a ViFi-CLIP checkpoint started from (OpenAI's), for the token embedding it does not save."""
    try:
        return _create(name, "openai", cache_dir, model_name).state_dict()
    except BackboneLoadError as e:
        raise BackboneLoadError(
            f"{checkpoint} is a ViFi-CLIP checkpoint, which does not hold CLIP's token embedding; it is read from "
            f"{model_name}'s 'openai' weights, which could not be loaded ({str(e).split(':')[0]}). Convert it once "
            f"with the original weights file: python -m zsvc_pl.convert {checkpoint} --base /path/to/ViT-B-16.pt "
            f"--out vifi-clip.pt, then pass --model.pretrained vifi-clip.pt") from e


def _tokenizer(name: str, model_name: str, cache_dir: str | None):
    """open_clip's tokenizer for ``name``. One whose files live on the Hugging Face hub (SigLIP, SigLIP 2, ...)
    is read from ``cache_dir/<hub name>`` when that folder exists, else from the hub or its cache; offline and
    not cached, it fails at once with one line that says how to provide it."""
    import open_clip

    text = (open_clip.get_model_config(name) or {}).get("text_cfg", {})
    hub = text.get("hf_tokenizer_name")
    if not hub:
        return open_clip.get_tokenizer(name, cache_dir=cache_dir)
    local = Path(cache_dir) / hub if cache_dir else None
    try:
        if local is not None and local.is_dir():
            return open_clip.tokenizer.HFTokenizer(str(local), context_length=text.get("context_length", 77),
                                                   **text.get("tokenizer_kwargs", {}))
        with _download_guard(True):
            return open_clip.get_tokenizer(name, cache_dir=cache_dir)
    except ImportError:
        raise BackboneLoadError(f"'{model_name}' uses a Hugging Face tokenizer ({hub}): pip install transformers") \
            from None
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BackboneLoadError(
            f"the tokenizer of '{model_name}' ({hub}, from the Hugging Face hub) could not be read ({reason}): on a "
            f"machine with internet run `AutoTokenizer.from_pretrained('{hub}').save_pretrained(DIR)` (transformers), "
            f"put DIR at {cache_dir or 'CACHE'}/{hub} and pass that cache folder (CLI: --model.cache_dir "
            f"{cache_dir or 'CACHE'}; Python: cache_dir=...)") from None


def load_clip(model_name: str = "ViT-B-32", pretrained: str | None = "openai",
              cache_dir: str | None = None) -> Backbone:
    """Build a frozen open_clip model in eval mode, with its tokenizer and preprocessing facts."""
    import open_clip

    name = _resolve_name(model_name)
    if pretrained == "demo":
        pretrained = str(DEMO_WEIGHTS)
    if is_random(pretrained):
        warnings.warn(
            f"zsvc_pl: building {name} with random weights (pretrained={pretrained!r}); "
            "predictions are meaningless except for tests.",
            stacklevel=2,
        )
        pretrained = None
    tokenizer = None
    if pretrained is not None and is_hf_clip_folder(pretrained):  # a transformers CLIP: its own architecture
        model, context_length = load_hf_clip(pretrained)
        name = f"transformers:{Path(pretrained).name}"
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
    elif pretrained is not None and (layout := checkpoint_layout(pretrained)):  # OpenAI, ViFi-CLIP, ActionCLIP
        base = _vifi_base(name, cache_dir, model_name, pretrained) if layout == "vifi-clip" else None
        model, context_length = load_openai_layout(pretrained, layout, base)
        name = f"{layout}:{Path(pretrained).name}"
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
    else:
        model = _create(name, pretrained, cache_dir, model_name)
    freeze(model)
    if pretrained is None:
        identity = f"{name}:random"
    elif Path(pretrained).is_file() or Path(pretrained).is_dir():
        identity = f"{name}:weights={weights_digest(model)[:16]}"
    else:
        identity = f"{name}:{pretrained}"
    pp = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = pp.get("size", getattr(model.visual, "image_size", 224))
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    tokenizer = tokenizer or _tokenizer(name, model_name, cache_dir)
    with torch.no_grad():
        embed_dim = int(model.encode_text(tokenizer(["a"])).shape[-1])
    return Backbone(
        model=model,
        tokenizer=tokenizer,
        image_size=int(size),
        mean=tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(pp.get("std", open_clip.OPENAI_DATASET_STD)),
        interpolation=pp.get("interpolation", "bicubic"),
        identity=identity,
        embed_dim=embed_dim,
        context_length=int(getattr(tokenizer, "context_length", 77)),
    )


def freeze(model: nn.Module) -> nn.Module:
    """Turn off gradients and put the model in eval mode (Lightning's .train() is undone by the module)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()
