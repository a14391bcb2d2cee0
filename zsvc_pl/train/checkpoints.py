"""What a zsvc_pl checkpoint holds and how one is read back: only the trainable state (never the frozen
backbone), the backbone identity it was trained on, and a format version.

Version 1 (zsvc_pl 0.1): keys ``temporal.*`` / ``prompt_learner.*`` on the LightningModule itself, and the
hyper-parameters ``num_frames``, ``sampling``, ``feature_cache`` that have since moved to the data side.
Version 2: keys under ``model.`` (the task holds a ``VideoTextModel``). Version 1 files are converted on load.
"""

from __future__ import annotations

import torch

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
