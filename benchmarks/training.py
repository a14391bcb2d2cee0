"""Training with and without cached frame features, back to back: the demo base-to-novel fit.

    python benchmarks/training.py [--out demo_runs/b2n] [--epochs 8] [--repeats 1]

Both runs are the demo base-to-novel fit of ``configs/demo_base2novel.yaml`` with CoOp context vectors and the
temporal transformer (the model's defaults otherwise), same seed, same data, each in its own process: once
decoding and encoding every training video every epoch, once with ``--data.feature_cache`` (a fresh cache
folder, so the first epoch fills it). Prints whole-fit time, first and later training-epoch times (validation
timed apart: the sanity check and epochs 4 and 8), and base/novel/HM.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import yaml
from measure import in_process

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_base2novel.yaml"


def fit_and_test(data: str, base: str, epochs: int, cache: str | None) -> dict:
    """One fit (timed per epoch) and a test of the result."""
    from lightning import Callback, Trainer, seed_everything

    from zsvc_pl import VideoClassificationTask, VideoDataModule

    class EpochTimer(Callback):
        """Seconds of each training epoch, without the validation that Lightning runs inside it."""

        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.validation: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._start, self._in_validation = time.perf_counter(), 0.0

        def on_validation_start(self, trainer, pl_module) -> None:
            self._val_start = time.perf_counter()

        def on_validation_end(self, trainer, pl_module) -> None:
            self.validation.append(time.perf_counter() - self._val_start)
            if hasattr(self, "_in_validation"):
                self._in_validation += self.validation[-1]

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.seconds.append(time.perf_counter() - self._start - self._in_validation)

    cfg = yaml.safe_load(CONFIG.read_text())
    seed_everything(cfg["seed_everything"])
    dm = VideoDataModule(**{**cfg["data"], "root": data, "base_novel": base, "feature_cache": cache})
    model = VideoClassificationTask(**{**cfg["model"], "temporal": "transformer", "ctx_init": "a video of"},
                                    class_names=dm.class_names, base_classes=dm.base_classes)
    timer = EpochTimer()
    trainer = Trainer(max_epochs=epochs, check_val_every_n_epoch=cfg["trainer"]["check_val_every_n_epoch"],
                      accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                      default_root_dir=tempfile.mkdtemp())
    start = time.perf_counter()
    trainer.fit(model, dm)
    fit_s = time.perf_counter() - start
    metrics = trainer.test(model, dm, verbose=False)[0]
    return {"fit_seconds": fit_s, "epoch_seconds": timer.seconds, "validation_seconds": timer.validation,
            **{k.split("/")[1]: float(v) for k, v in metrics.items() if k.split("/")[1] in
               ("base_top1", "novel_top1", "hm")}}


def main() -> None:
    from zsvc_pl.demo.base2novel import prepare

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_runs/b2n")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs (plain, cached), in alternating order")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the speed-up per later epoch needs one")
    out = Path(args.out)
    data = prepare(out, train_per_class=8, test_per_class=3, seed=7)
    runs: dict[str, list[dict]] = {"decode every epoch": [], "cached features": []}
    for i in range(args.repeats):  # the order alternates: a run right after another may find the CPU slower
        for name in list(runs)[:: 1 if i % 2 == 0 else -1]:
            with tempfile.TemporaryDirectory() if name == "cached features" else nullcontext() as cache:
                runs[name].append(in_process(fit_and_test, str(data), str(out / "base.txt"), args.epochs, cache))
    print(json.dumps(runs, indent=1))
    print("\n| run | fit | first epoch | later epochs (mean) | validations | base | novel | HM |\n"
          "|---|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        for r in rs:
            later = sum(r["epoch_seconds"][1:]) / max(len(r["epoch_seconds"]) - 1, 1)
            val = " + ".join(f"{v:.1f}" for v in r["validation_seconds"])
            print(f"| {name} | {r['fit_seconds']:.1f} s | {r['epoch_seconds'][0]:.1f} s | {later:.2f} s | {val} s | "
                  f"{100 * r['base_top1']:.1f} | {100 * r['novel_top1']:.1f} | {100 * r['hm']:.1f} |")
    fits, epochs = [], []
    for plain, cached in zip(runs["decode every epoch"], runs["cached features"]):
        later = [sum(r["epoch_seconds"][1:]) / max(len(r["epoch_seconds"]) - 1, 1) for r in (plain, cached)]
        fits.append(plain["fit_seconds"] / cached["fit_seconds"])
        epochs.append(later[0] / later[1])
        print(f"speed-up: whole fit {fits[-1]:.1f}x, epochs after the first {epochs[-1]:.1f}x; "
              f"HM {100 * plain['hm']:.1f} -> {100 * cached['hm']:.1f}")
    if len(fits) > 1:
        print(f"median of {len(fits)} pairs: whole fit {statistics.median(fits):.1f}x, epochs after the first "
              f"{statistics.median(epochs):.1f}x")


if __name__ == "__main__":
    main()
