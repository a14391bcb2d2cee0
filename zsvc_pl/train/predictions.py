"""PredictionWriter: one row per video (path, top-k labels, scores) in CSV or JSON Lines, resumable and safe.

Rows go to journals beside the output (``zsvc_pl.data.outputs``); the output is replaced whole at the end. A
rerun with the same settings (the run's signature: everything that changes a row) predicts only the videos not
done yet, which resumes an interrupted job and tags what a growing library added; a video whose file changed
since its row was written (size or modification time) is tagged again; a rerun with other settings is refused
unless ``overwrite`` is set. One run writes an output at a time. Under DDP every rank keeps its own journal and rank 0
merges them into the one output the user named, each video once.
"""

from __future__ import annotations

import inspect
import json
import os
from contextlib import ExitStack
from pathlib import Path

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from zsvc_pl.data.outputs import (
    Journal,
    OutputError,
    atomic_write_text,
    check_writable,
    csv_text,
    file_stamp,
    output_lock,
    remove_stale_temporaries,
    signature_difference,
)
from zsvc_pl.train.callbacks import run_dir

FORMATS = (".csv", ".jsonl", ".json")


class PredictionWriter(BasePredictionWriter):
    """Writes the predictions of ``predict``.

    Args:
        output: ``.csv`` or ``.jsonl``/``.json`` file; default ``predictions.csv`` in the run folder.
        overwrite: replace an output that was written with other settings (labels, templates, top-k, backbone,
            checkpoint, sampling, input folder) instead of refusing.
    """

    def __init__(self, output: str | None = None, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self.overwrite = overwrite
        self._lock: ExitStack | None = None

    def _journals(self, target: Path) -> tuple[Journal, list[Journal]]:
        main = Journal(target.with_name(f".{target.name}.journal"))
        ranks = [Journal(p) for p in sorted(target.parent.glob(f".{target.name}.journal.rank*"))]
        return main, ranks

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        dm = trainer.datamodule
        target = Path(self.output) if self.output else run_dir(trainer) / "predictions.csv"
        if target.suffix.lower() not in FORMATS:
            raise OutputError(f"--predictions.output {target}: use a .csv or .jsonl file")
        self._target, self._videos = target, list(dm.predict_videos)
        self._signature = run_signature(trainer, pl_module, dm)
        if target.suffix.lower() == ".csv":
            bad = [label for label in self._signature["labels"] if "|" in label]
            if bad:
                raise OutputError(f"label {bad[0]!r} contains '|', which separates labels in the CSV; write JSON "
                                  f"Lines instead (--predictions.output {target.with_suffix('.jsonl')})")
        error = ""
        if trainer.is_global_zero:
            self._lock = ExitStack()
            try:
                check_writable(target)  # a folder, a read-only or full disk: said now, not after the work
                self._lock.enter_context(output_lock(target))
            except OutputError as e:
                error = str(e)
        error = trainer.strategy.broadcast(error, src=0)
        if error:
            raise OutputError(error)
        done, changed = self._done(target)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            remove_stale_temporaries(target.parent, target.name)
            self._merge(target, keep_main=not self.overwrite, drop=changed)
        trainer.strategy.barrier()
        self._journal = Journal(target.with_name(f".{target.name}.journal.rank{trainer.global_rank}"))
        self._journal.start(self._signature)
        left = dm.skip_videos(done)
        if done or changed:
            again = f" ({len(changed)} changed since their rows were written: tagged again)" if changed else ""
            rank_zero_info(f"zsvc_pl predict: {len(done)} video(s) already in {target}, {left} to go{again}")
        if left == 0:  # Lightning runs no predict loop, so no on_predict_end: finish here
            self.on_predict_end(trainer, pl_module)

    def _done(self, target: Path) -> tuple[set[str], set[str]]:
        """Videos an earlier run with the same signature already predicted from the file as it is now, and the
        listed videos whose rows were made from an earlier state of their file; refuses other settings."""
        if self.overwrite:
            return set(), set()
        main, ranks = self._journals(target)
        signature, rows = main.read()
        if signature is None:
            if target.exists():
                raise OutputError(f"{target} exists but was not written by a resumable zsvc_pl run; pass "
                                  f"--predictions.overwrite true to replace it, or choose another --predictions.output")
            return set(), set()
        if signature != self._signature:
            raise OutputError(f"{target} holds predictions made with other settings: "
                              f"{signature_difference(signature, self._signature)}. Pass --predictions.overwrite "
                              f"true to replace them, or choose another --predictions.output")
        for journal in ranks:
            sig, more = journal.read()
            if sig == signature:
                rows.update(more)
        listed = [p for p in self._videos if p in rows]
        done = {p for p in listed if rows[p].get("stamp") == file_stamp(p)}
        # replaced or edited since (or a row from before stamps were kept): its row goes, the video is tagged again
        return done, set(listed) - done

    def _merge(self, target: Path, keep_main: bool = True, drop: set[str] = frozenset()) -> dict[str, dict]:
        """Fold every rank's journal into the main journal (rank 0 only), without the rows of ``drop``; returns
        all rows."""
        main, ranks = self._journals(target)
        signature, rows = main.read() if keep_main else (None, {})
        if signature not in (None, self._signature):
            rows = {}
        for journal in ranks:
            sig, more = journal.read()
            if sig == self._signature:
                rows.update(more)
        rows = {p: r for p, r in rows.items() if p not in drop}
        main.start(self._signature, list(rows.values()))
        for journal in ranks:
            journal.remove()
        return rows

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        if prediction:
            self._journal.append(prediction)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            rows = self._merge(self._target)
            ordered = [rows[p] for p in self._videos if p in rows]
            as_csv = self._target.suffix.lower() == ".csv"
            atomic_write_text(self._target, rows_text(ordered, as_csv))
            rank_zero_info(f"zsvc_pl predict: {len(ordered)} prediction(s) written to {self._target}")
        trainer.strategy.barrier()
        self._release()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._release()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def rows_text(rows: list[dict], as_csv: bool) -> str:
    """Predictions as CSV (labels and scores joined by ``|``) or JSON Lines (path, labels, scores: the file
    stamp stays in the journal)."""
    if as_csv:
        return csv_text(["path", "labels", "scores"], [[r["path"], "|".join(r["labels"]),
                                                          "|".join(f"{s:.6f}" for s in r["scores"])] for r in rows])
    return "".join(json.dumps({k: r[k] for k in ("path", "labels", "scores")}) + "\n" for r in rows)


# Model settings that change the scores beside those the signature names on its own (they appear only when
# they differ from their defaults, so journals written before they were recorded still resume).
SCORING_SETTINGS = ("temporal_depth", "temporal_heads", "max_frames", "attention_temperature", "n_ctx", "ctx_init",
                    "class_specific_ctx", "class_position", "zs_mix", "vision_prompts")


def run_signature(trainer: Trainer, pl_module: LightningModule, dm) -> dict:
    """What decides the rows of a prediction run; a resumed run must match it exactly. Settings added since
    journals began (abstention, label sets, the image tower's variant, the scoring settings above) appear only
    when used, so older journals still resume."""
    hp = pl_module.hparams
    defaults = inspect.signature(type(pl_module).__init__).parameters
    ckpt = trainer.ckpt_path
    stamp = None
    if ckpt and Path(ckpt).is_file():
        st = os.stat(ckpt)
        stamp = f"{Path(ckpt).resolve()}|{st.st_size}|{st.st_mtime_ns}"
    extra = {"abstain": hp.get("abstain"), "label_set": _label_set_signature(getattr(dm, "label_set", None)),
             "image_tower": pl_module.model.image_variant.strip("|") or None,  # token merging, int8, compiled
             "model": {k: hp[k] for k in SCORING_SETTINGS if k in hp and hp[k] != defaults[k].default} or None}
    if extra["label_set"] is not None:
        extra["example_weight"] = hp.get("example_weight")
    return {**{k: v for k, v in extra.items() if v is not None},
            "input": dm.predict_source, "labels": list(pl_module.class_names or []),
            "templates": list(pl_module.model.templates), "descriptions": hp.descriptions,
            "descriptions_mode": hp.descriptions_mode, "top_k": hp.top_k, "backbone": pl_module.backbone_identity,
            "temporal": hp.temporal, "checkpoint": stamp, "sampling": dm.predict_set.reader.sampling_key}


def _label_set_signature(label_set) -> list | None:
    """A label set's texts, and its example clips with their size and modification time."""
    if label_set is None:
        return None
    clips = [[[c, os.stat(c).st_size, os.stat(c).st_mtime_ns] for c in group] for group in label_set.clips]
    return [label_set.texts, clips]
