"""What a zsvc_pl checkpoint holds and how one is read back: only the trainable state (never the frozen
backbone), the backbone identity it was trained on, and a format version.

Version 1 (zsvc_pl 0.1): keys ``temporal.*`` / ``prompt_learner.*`` on the LightningModule itself, and the
hyper-parameters ``num_frames``, ``sampling``, ``feature_cache`` that have since moved to the data side.
Version 2: keys under ``model.`` (the task holds a ``VideoTextModel``). Version 1 files are converted on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from zsvc_pl.data.outputs import atomic_write

CHECKPOINT_VERSION = 2
_V1_PREFIXES = ("temporal.", "prompt_learner.")
MOVED_HPARAMS = {"num_frames": "data.num_frames", "sampling": "data.sampling",
                 "feature_cache": "data.feature_cache"}


class BackboneMismatchError(RuntimeError):
    """A checkpoint was trained on another backbone than the one configured."""


class CheckpointError(RuntimeError):
    """A checkpoint that this version of zsvc_pl cannot use; the message says why."""


def save_state(checkpoint: dict, backbone_identity: str) -> None:
    """Drop the frozen backbone's weights; record the backbone identity and the format version."""
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                if not k.startswith("model.backbone.")}
    checkpoint["backbone_identity"] = backbone_identity
    checkpoint["zsvc_pl_checkpoint_version"] = CHECKPOINT_VERSION


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint file's content, loaded safely (tensors and plain containers only) and checked for the shape of
    a Lightning checkpoint; a damaged, truncated or foreign file raises ``CheckpointError`` naming it."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a folder, not a checkpoint file") from None
    except Exception as e:  # truncated, garbage, a pickle of other classes, a zip without tensors
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({reason}): it is damaged or not a zsvc_pl "
                              "checkpoint; use another one (last.ckpt of a fit)") from None
    _check_layout(checkpoint, path)
    return checkpoint


def _check_layout(checkpoint: Any, path: str | Path) -> None:
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict mapping): use last.ckpt of a fit")
    wrong = [k for k, v in checkpoint["state_dict"].items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if wrong:
        raise CheckpointError(f"{path}: state_dict entries that are not tensors ({', '.join(map(str, wrong[:3]))}): "
                              "the file is damaged")
    if not isinstance(checkpoint.get("hyper_parameters", {}), dict):
        raise CheckpointError(f"{path}: hyper_parameters is not a mapping: the file is damaged")


def check_trainable_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Refuse a checkpoint whose learned tensors are not exactly those of the model it is loaded into: a missing
    one would stay random, an extra one would be dropped or (a backbone tensor) replace the frozen weights, and
    a wrong shape means another model. Each case names the keys."""
    problems = []
    backbone = sorted(k for k in state if k.startswith("model.backbone."))
    if backbone:
        problems.append(f"it carries frozen-backbone tensors, which a checkpoint never holds ({_names(backbone)})")
    missing = sorted(set(expected) - set(state))
    if missing:
        problems.append(f"learned tensors are missing ({_names(missing)})")
    unexpected = sorted(set(state) - set(expected) - set(backbone))
    if unexpected:
        problems.append(f"it holds tensors this model does not have ({_names(unexpected)})")
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in state and state[k].shape != v.shape]
    if shapes:
        problems.append(f"tensors of another shape ({'; '.join(shapes[:3])})")
    if problems:
        raise CheckpointError("checkpoint does not fit this model: " + "; ".join(problems)
                              + ". It is damaged or was edited; use the checkpoint its fit wrote")


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves checkpoints through ``atomic_write``: a temporary file beside the checkpoint, renamed over it.
    Lightning's own save writes through a temporary file in ``TMPDIR`` and, when that is another file system,
    copies it into the existing checkpoint: a kill during the copy left ``last.ckpt`` empty."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options: Any | None = None) -> None:
        def write(f: BinaryIO) -> None:
            torch.save(checkpoint, f)

        atomic_write(path, write)


def prepare_state(checkpoint: dict, backbone_identity: str, allow_unidentified: bool = False) -> None:
    """Bring a checkpoint to the current layout and check it belongs to this backbone and holds finite values."""
    version = checkpoint.get("zsvc_pl_checkpoint_version", 1)
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint format version {version} is newer than this zsvc_pl reads "
                              f"({CHECKPOINT_VERSION}): upgrade zsvc_pl")
    state = checkpoint.get("state_dict", {})
    if version == 1:
        state = {("model." + k if k.startswith(_V1_PREFIXES) else k): v for k, v in state.items()}
        for key in MOVED_HPARAMS:
            checkpoint.get("hyper_parameters", {}).pop(key, None)
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint tensors hold NaN/inf ({', '.join(bad[:3])}): the file is damaged")
    checkpoint["state_dict"] = state
    saved = checkpoint.get("backbone_identity")
    if saved is None and not allow_unidentified:
        raise BackboneMismatchError(
            "this checkpoint does not record the backbone it was trained on, so it cannot be checked against "
            f"'{backbone_identity}'. If you are sure it matches, set model.allow_unidentified_checkpoint=true.")
    if saved is not None and saved != backbone_identity:
        raise BackboneMismatchError(
            f"this checkpoint was trained on backbone '{saved}', but the model is configured with "
            f"'{backbone_identity}'. Set model_name/pretrained to the checkpoint's backbone.")
