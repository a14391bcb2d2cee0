"""What the CLI adds to every run: the run report (timing, skipped videos gathered over ranks, ``errors.csv``)
and, for ``fit``, a resumable ``last.ckpt`` and the guard of the run folder's checkpoints."""

from __future__ import annotations

import atexit
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import torch
import torch.distributed as dist
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from zsvc_pl.data.outputs import OutputError, atomic_write_text, csv_text, output_lock


def run_dir(trainer: Trainer) -> Path:
    """The run's folder (the logger's, else the trainer's root dir). Under DDP every rank must call this: the
    logger's folder is broadcast from rank 0."""
    return Path(trainer.log_dir or trainer.default_root_dir)


def gather_lists(items: list) -> list:
    """Concatenate a list from every process (a collective: every rank must call it)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def _destroy_process_group() -> None:
    """Destroy the process group before the interpreter shuts down, as PyTorch asks: a gloo group left to the
    interpreter's teardown once aborted a rank of a finished ``ddp_spawn`` run (SIGABRT, "terminate called without
    an active exception"). Lightning registers the same for NCCL only."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class NothingReadError(ValueError):
    """A stage that could read none of its videos: there is no result to report, so the run fails."""


INTERRUPTED: dict[str, str] = {}  # set when Ctrl-C stopped a stage: what to tell the user (``zsvc_pl.cli``)


class RunReport(Callback):
    """Times each stage and reports unreadable videos: a summary line and ``errors.csv`` in the run folder; on
    Ctrl-C, notes how the run can go on (``INTERRUPTED``)."""

    def __init__(self) -> None:
        self._start: dict[str, float] = {}

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        stage = getattr(trainer.state.fn, "value", str(trainer.state.fn))
        last = run_dir(trainer) / "checkpoints" / "last.ckpt"
        if stage == "fit":
            how = (f"resume with --ckpt_path {last}" if last.is_file()
                   else "no checkpoint was written yet: rerun to start again")
        elif stage == "predict":
            how = "rerun the same command to resume (finished videos are kept)"
        else:
            how = "rerun the same command to evaluate again"
        INTERRUPTED.update(stage=stage, how=how)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if dist.is_available() and dist.is_initialized():  # every rank, registered once
            atexit.unregister(_destroy_process_group)
            atexit.register(_destroy_process_group)

    def _begin(self, stage: str, pl_module: LightningModule) -> None:
        self._start[stage] = time.perf_counter()
        pl_module.decode_errors = []

    def _write_errors(self, trainer: Trainer, pl_module: LightningModule) -> tuple[list, Path]:
        """Gather the skipped videos over ranks and write ``errors.csv`` (rank 0) when there are any."""
        errors = sorted(set(gather_lists(pl_module.decode_errors)))
        path = run_dir(trainer) / "errors.csv"
        if errors and trainer.is_global_zero:
            atomic_write_text(path, csv_text(["path", "reason"], errors))
        elif trainer.is_global_zero:  # an earlier run's list would read as this run's (its run card keeps the count)
            path.unlink(missing_ok=True)
        return errors, path

    def _end(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        seconds = time.perf_counter() - self._start.pop(stage, time.perf_counter())
        errors, path = self._write_errors(trainer, pl_module)
        msg = f"zsvc_pl {stage}: {seconds:.1f} s"
        if errors:
            reasons = Counter(r.split(" (")[0].split(":")[0] for _, r in errors)
            msg += f"; {len(errors)} video(s) skipped ({dict(reasons)}); details in {path}"
        else:
            msg += "; no video skipped"
        rank_zero_info(msg)
        trainer.callback_metrics[f"{stage}/seconds"] = torch.tensor(seconds)
        trainer.callback_metrics[f"{stage}/skipped"] = torch.tensor(float(len(errors)))
        if stage in ("test", "validate"):
            read = ("val" if stage == "validate" else stage) in pl_module.last_results
        elif stage == "predict":  # a resumed run whose new files are all unreadable still has the earlier rows
            dm = trainer.datamodule
            tagged_before = len(dm.predict_videos) - len(dm.predict_set.records)
            read = sum(gather_lists([len(pl_module.video_predictions)])) + tagged_before > 0 or not errors
        else:
            read = True
        if not read:
            raise NothingReadError(_nothing_read(stage, errors, path))

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
        elif trainer.state.fn == "fit" and not trainer.sanity_checking:
            if "val" not in pl_module.last_results:
                errors, path = self._write_errors(trainer, pl_module)
                raise NothingReadError(_nothing_read(f"fit epoch {trainer.current_epoch}, validation", errors, path))
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            shown = ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in sorted(metrics.items())
                              if not k.endswith("videos"))
            rank_zero_info(f"zsvc_pl fit: epoch {trainer.current_epoch} validation: {shown}")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """An epoch that could read none of its training videos trained nothing: say so instead of going on."""
        if sum(gather_lists([pl_module.train_videos])) == 0:
            errors, path = self._write_errors(trainer, pl_module)
            raise NothingReadError(_nothing_read(f"fit epoch {trainer.current_epoch}, training", errors, path))

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin("fit", pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer, pl_module, "fit")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin("predict", pl_module)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer, pl_module, "predict")


def _nothing_read(what: str, errors: list, path: Path) -> str:
    where = f"{len(errors)} skipped, each with its reason in {path}" if errors else "the dataset gave none"
    return f"{what}: no video could be read ({where}); there is no result to report"


def earlier_checkpoints(folder: str | Path) -> list[str]:
    """Names of the checkpoints in ``folder`` (none when it does not exist)."""
    folder = Path(folder)
    return sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []


class CheckpointFolderGuard(Callback):
    """One ``fit`` at a time writes a checkpoint folder, and never beside another fit's checkpoints.

    A fit into a folder that already holds checkpoints is refused unless it resumes from one of them: Lightning
    would write ``last-v1.ckpt`` beside the earlier ``last.ckpt``, which ``test --ckpt_path .../last.ckpt`` would
    then evaluate instead of the new model. A second fit into the same folder while one runs is refused at once.
    """

    def __init__(self, folder: str | Path, resume_from: str | None = None) -> None:
        self.folder = Path(folder)
        self.resume_from = resume_from
        self._lock: ExitStack | None = None

    def _claim(self) -> str:
        """Take the folder, or say why not."""
        resuming = self.resume_from is not None and Path(self.resume_from).resolve().parent == self.folder.resolve()
        earlier = earlier_checkpoints(self.folder)
        if earlier and not resuming:
            return (f"{self.folder} already holds the checkpoints of an earlier fit ({', '.join(earlier)}): resume "
                    f"with --ckpt_path {self.folder / earlier[0]}, or fit into another run folder")
        self._lock = ExitStack()
        try:
            self._lock.enter_context(output_lock(self.folder))
        except OutputError:
            self._lock = None
            return (f"{self.folder} is being written by another fit; wait for it, or fit into another "
                    "--trainer.default_root_dir")
        return ""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        error = self._claim() if trainer.is_global_zero else ""
        error = trainer.strategy.broadcast(error, src=0)
        if error:
            raise OutputError(error)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._release()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class ResumableCheckpoint(ModelCheckpoint):
    """``last.ckpt`` after every training epoch, and every ``every_minutes`` within a long epoch, so that a fit
    killed at any point resumes (``fit --ckpt_path .../last.ckpt``) having lost at most an epoch or those minutes.

    Lightning's ``ModelCheckpoint(save_last=True, save_top_k=0)`` writes ``last.ckpt`` only when training ends, and
    with ``save_top_k > 0`` only on the epochs it validates. Other ``ModelCheckpoint`` arguments pass through
    (``save_top_k`` with a ``monitor`` keeps the best ones as well).
    """

    def __init__(self, dirpath: str | None = None, every_minutes: float | None = 30.0, save_top_k: int = 0,
                 save_last: bool = True, **kwargs) -> None:
        if every_minutes is not None and every_minutes <= 0:
            raise ValueError(f"every_minutes must be above 0 (or None: once per epoch), got {every_minutes}")
        if not save_last:
            raise ValueError("ResumableCheckpoint exists to keep last.ckpt: use ModelCheckpoint for best-only saves")
        super().__init__(dirpath=dirpath, save_top_k=save_top_k, save_last=True, **kwargs)
        self.every_minutes = every_minutes
        self._saved_at = time.monotonic()

    def _save_last_now(self, trainer: Trainer) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._saved_at = time.monotonic()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._saved_at = time.monotonic()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.every_minutes is None:
            return
        due = time.monotonic() - self._saved_at >= 60 * self.every_minutes
        if trainer.strategy.broadcast(due, src=0):  # every rank takes part in a save
            self._save_last_now(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_last_now(trainer)
