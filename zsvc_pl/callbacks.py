"""Callbacks the CLI always adds: a run report (timing, skipped videos, errors file) and the prediction writer."""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from pathlib import Path

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info


def run_dir(trainer: Trainer) -> Path:
    """The run's log folder (the logger's, else the trainer's root dir)."""
    return Path(trainer.log_dir or trainer.default_root_dir)


def _rank_suffix(trainer: Trainer) -> str:
    return f".rank{trainer.global_rank}" if trainer.world_size > 1 else ""


class RunReport(Callback):
    """Times each stage and reports unreadable videos: a summary line and ``errors.csv`` in the run folder."""

    def __init__(self) -> None:
        self._start: dict[str, float] = {}

    def _begin(self, stage: str, pl_module: LightningModule) -> None:
        self._start[stage] = time.perf_counter()
        pl_module.decode_errors = []

    def _end(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        seconds = time.perf_counter() - self._start.pop(stage, time.perf_counter())
        errors = sorted(set(pl_module.decode_errors))
        msg = f"zsvc_pl {stage}: {seconds:.1f} s"
        if errors:
            folder = run_dir(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"errors{_rank_suffix(trainer)}.csv"
            with open(path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["path", "reason"])
                writer.writerows(errors)
            reasons = Counter(r.split(" (")[0].split(":")[0] for _, r in errors)
            msg += f"; {len(errors)} video(s) skipped ({dict(reasons)}); details in {path}"
        else:
            msg += "; no video skipped"
        rank_zero_info(msg)
        trainer.callback_metrics[f"{stage}/seconds"] = torch.tensor(seconds)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin("test", pl_module)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer, pl_module, "test")

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "validate":
            self._begin("validate", pl_module)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "validate" in self._start:
            self._end(trainer, pl_module, "validate")

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin("fit", pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer, pl_module, "fit")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin("predict", pl_module)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer, pl_module, "predict")


def done_paths(output: str | Path) -> set[str]:
    """Videos already in a predictions file or in the partial file of an interrupted run."""
    output = Path(output)
    done: set[str] = set()
    for f in (output, output.with_name(f".{output.name}.partial")):
        if not f.is_file():
            continue
        if f.name.endswith((".csv", ".csv.partial")):
            done |= {row["path"] for row in csv.DictReader(open(f, newline="")) if row.get("path")}
        else:
            for line in f.read_text().splitlines():
                try:
                    done.add(json.loads(line)["path"])
                except (ValueError, KeyError):
                    continue  # a line cut by the interruption
    return done


class PredictionWriter(BasePredictionWriter):
    """Writes one row per video (path, top-k labels, scores) to CSV or JSON Lines, atomically: rows go to a
    hidden ``.partial`` file that replaces the output at the end. A rerun with the same ``output`` keeps the
    rows already written (the data module skips those videos), so an interrupted tagging job resumes.

    Args:
        output: file to write; ``.csv`` or ``.jsonl``/``.json``. Default: ``predictions.csv`` in the run folder.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self._tmp: Path | None = None
        self._target: Path | None = None

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        target = Path(self.output) if self.output else run_dir(trainer) / "predictions.csv"
        target = target.with_name(target.stem + _rank_suffix(trainer) + target.suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._target = target
        self._tmp = target.with_name(f".{target.name}.partial")
        kept = self._previous_rows(target)
        with open(self._tmp, "w", newline="") as f:
            f.write(kept)

    def _previous_rows(self, target: Path) -> str:
        """Rows of an earlier complete or interrupted run with the same output (header kept once)."""
        text = ""
        for f in (target, self._tmp):
            if f.is_file():
                lines = [line for line in f.read_text().splitlines(keepends=True) if line.endswith("\n")]
                if target.suffix == ".csv" and text and lines:
                    lines = lines[1:]
                text += "".join(lines)
        return text

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if not prediction:
            return
        with open(self._tmp, "a", newline="") as f:
            if self._target.suffix == ".csv":
                writer = csv.writer(f)
                if f.tell() == 0:
                    writer.writerow(["path", "labels", "scores"])
                for row in prediction:
                    writer.writerow([row["path"], "|".join(row["labels"]),
                                     "|".join(f"{s:.6f}" for s in row["scores"])])
            else:
                for row in prediction:
                    f.write(json.dumps(row) + "\n")

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._tmp is not None and self._tmp.exists():
            os.replace(self._tmp, self._target)
            rank_zero_info(f"zsvc_pl predict: predictions written to {self._target}")


class ResultPlots(Callback):
    """After ``test``: confusion matrix, per-class accuracy and (base-to-novel) base/novel bars as PNG files in
    the run folder, also logged to TensorBoard when that logger is on."""

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        res = getattr(pl_module, "last_results", {}).get("test")
        if res is None or not trainer.is_global_zero:
            return
        from zsvc_pl import plots

        labels = pl_module.class_names
        conf = res["confusion"].numpy()
        figures = {"confusion": plots.confusion_figure(conf, labels),
                   "per_class_accuracy": plots.per_class_figure(conf, labels, pl_module.base_classes)}
        if "test/hm" in res["metrics"]:
            figures["base_novel"] = plots.base_novel_figure(
                {k.split("/")[-1]: v for k, v in res["metrics"].items()})
        folder = run_dir(trainer) / "figures"
        for name, fig in figures.items():
            for logger in trainer.loggers:
                if hasattr(logger.experiment, "add_figure"):
                    logger.experiment.add_figure(f"test/{name}", fig, global_step=trainer.global_step)
            plots.save(fig, folder / f"{name}.png")
        rank_zero_info(f"zsvc_pl test: figures written to {folder}")
