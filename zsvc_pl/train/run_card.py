"""The run card: ``run.json`` in the run folder (``trainer.default_root_dir``; ``run-2.json`` ... for later runs
into the same folder) after every ``test`` and ``predict``, so that a number can be reproduced and two runs
compared (``python -m zsvc_pl.compare RUN_A RUN_B``).

It records what decides the scores (backbone and a digest of its weights and of the learned state, templates,
temporal aggregation, frames x clips x crops, sampling, frame size, decoder settings), the versions of what
decodes and computes (FFmpeg's libraries, PyAV, decord, torch, open_clip, Lightning), a digest of the input
file list, the metrics, and each video's top label.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from lightning import Callback, LightningModule, Trainer

from zsvc_pl.data.outputs import write_new
from zsvc_pl.model.backbone import state_digest, weights_digest
from zsvc_pl.train.callbacks import gather_lists

MODEL_KEYS = ("model_name", "pretrained", "templates", "descriptions", "descriptions_mode", "temporal",
              "temporal_depth", "n_ctx", "ctx_init", "class_specific_ctx", "zs_mix", "quantize", "token_merging",
              "compile_tower", "vision_prompts", "abstain", "example_weight", "top_k")
DATA_KEYS = ("num_frames", "num_clips", "num_crops", "sampling", "frame_size", "backend", "decode_timeout",
             "format", "fold", "label_file", "other_classes", "k_shot", "seed")


def versions() -> dict:
    """Versions of Python, the libraries that compute and decode, and FFmpeg's libraries as PyAV links them."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("zsvc_pl", "torch", "torchvision", "open_clip_torch", "lightning", "av", "decord", "numpy",
                    "torchao", "faiss-cpu"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    try:
        import av

        out["ffmpeg"] = {name: ".".join(map(str, v)) for name, v in av.library_versions.items()}
    except ImportError:
        out["ffmpeg"] = None
    return out


def files_digest(paths: list[str]) -> str:
    """sha256 over the sorted input paths: two runs on the same file list share it."""
    return hashlib.sha256("\n".join(sorted(paths)).encode("utf-8", "surrogateescape")).hexdigest()


def learned_digest(pl_module: LightningModule) -> str | None:
    """sha256 of the trainable state (CoOp vectors, temporal transformer), ``None`` when nothing is learned."""
    state = {k: v for k, v in pl_module.state_dict().items() if not k.startswith("model.backbone.")}
    return state_digest(state) if state else None


class RunCard(Callback):
    """Writes ``run.json`` in the run folder at the end of ``test`` and ``predict`` (rank 0, atomically)."""

    def _write(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        predictions = dict(gather_lists(list(pl_module.video_predictions.items())))
        folder = Path(trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        hp, dm = pl_module.hparams, trainer.datamodule
        card = {
            "stage": stage, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": sys.argv, "checkpoint": trainer.ckpt_path,
            "backbone": {"identity": pl_module.model.identity, "features": pl_module.model.feature_identity,
                         "weights_sha256": weights_digest(pl_module.model.backbone),
                         "learned_sha256": learned_digest(pl_module)},
            "model": {k: hp.get(k) for k in MODEL_KEYS} | {"templates_resolved": list(pl_module.model.templates)},
            "data": {k: dm.hparams.get(k) for k in DATA_KEYS} if dm is not None else {},
            "labels": list(pl_module.class_names or []),
            "inputs": {"videos": len(predictions), "paths_sha256": files_digest(list(predictions))},
            "versions": versions(),
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{stage}/")},
            "predictions": dict(sorted(predictions.items())),
        }
        write_new(folder, "run", ".json", json.dumps(card, indent=1))  # run.json, run-2.json, ... never overwritten

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.video_predictions = {}

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.video_predictions = {}

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module, "test")

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module, "predict")
