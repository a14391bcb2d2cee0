"""Base-to-novel on the demo world: fit each learnable configuration on base classes, test on base and novel.

    python -m zsvc_pl.demo.base2novel [--out demo_runs/b2n] [--variants zeroshot temporal ...]

Every variant is a plain LightningCLI run of configs/demo_base2novel.yaml with a few overrides, so the same
numbers come from `python -m zsvc_pl fit --config configs/demo_base2novel.yaml ...` by hand. Each run fits every
variant afresh into ``--out``/<variant>; an ``--out`` that holds an earlier run's checkpoints is refused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from zsvc_pl.api import ZeroShotVideoClassifier
from zsvc_pl.cli import main as cli_main
from zsvc_pl.demo.evaluate import attribute_accuracy
from zsvc_pl.demo.world import all_classes, base_novel_classes, generate_dataset
from zsvc_pl.train.callbacks import earlier_checkpoints

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo_base2novel.yaml"
_COOP = ["--model.ctx_init", "a video of"]
_TEMPORAL = ["--model.temporal", "transformer"]
_HARD = ["--model.lr", "0.01", "--trainer.max_epochs", "24"]  # 5x the learning rate, 3x the epochs
_OFF = ["--model.text_reg_weight", "0", "--model.zs_mix", "0"]  # the novel-preserving parts, off
_KGCOOP = ["--model.text_reg_weight", "8.0", "--model.zs_mix", "0"]
_KEEP_NOVEL = ["--model.text_reg_weight", "8.0", "--model.zs_mix", "0.2"]  # the module's defaults
VARIANTS: dict[str, list[str]] = {
    "zeroshot": [],
    "coop": _COOP + _OFF,
    "temporal": _TEMPORAL + _OFF,
    "coop+temporal": _COOP + _TEMPORAL + _OFF,
    "coop_hard": _COOP + _HARD + _OFF,
    "coop_hard+kgcoop": _COOP + _HARD + _KGCOOP,
    "coop+temporal_hard": _COOP + _TEMPORAL + _HARD + _OFF,
    "coop+temporal_hard+kgcoop+mix": _COOP + _TEMPORAL + _HARD + _KEEP_NOVEL,
}
DEFAULT_VARIANTS = list(VARIANTS)


def prepare(out: Path, train_per_class: int, test_per_class: int, seed: int) -> Path:
    """Generate the dataset (once) and the base class file; return the data folder."""
    data = out / "data"
    if not (data / "test").is_dir():
        generate_dataset(data, {"train": train_per_class, "val": 1, "test": test_per_class}, all_classes(), seed=seed)
    base, _ = base_novel_classes()
    (out / "base.txt").write_text("\n".join(base) + "\n")
    return data


def run_variant(name: str, data: Path, out: Path, extra: list[str]) -> dict:
    """Fit (unless zero-shot) and test one variant; base/novel/HM plus novel attribute accuracy."""
    common = ["--config", str(CONFIG), "--data.root", str(data), "--data.base_novel", str(out / "base.txt"),
              "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(out / name), *extra]
    start = time.perf_counter()
    if name == "zeroshot":
        cli = cli_main(["test", *common])
        metrics = cli.trainer.callback_metrics
        fit_s = 0.0
    else:
        cli = cli_main(["fit", *common])
        fit_s = time.perf_counter() - start
        metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    res = {k.split("/")[-1]: float(v) for k, v in metrics.items() if k.startswith("test/")}
    hp = cli.datamodule.hparams
    clf = ZeroShotVideoClassifier(model=cli.model.model, num_frames=hp.num_frames, frame_size=hp.frame_size)
    res["novel_attr"] = attribute_accuracy(clf, data / "test", base_novel_classes()[1])
    res["fit_seconds"] = round(fit_s, 1)
    return res


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_runs/b2n")
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    parser.add_argument("--train-per-class", type=int, default=8)
    parser.add_argument("--test-per-class", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    out = Path(args.out)
    taken = [out / name for name in args.variants if earlier_checkpoints(out / name / "checkpoints")]
    if taken:  # every variant is fitted afresh, and a fit never lands beside an earlier one's checkpoints
        parser.error(f"{taken[0]} holds an earlier run's checkpoints: pass another --out, or remove it")
    data = prepare(out, args.train_per_class, args.test_per_class, args.seed)
    results = {name: run_variant(name, data, out, VARIANTS[name]) for name in args.variants}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print("\n| variant | base top-1 | novel top-1 | HM | novel direction | novel colour+shape | fit time |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        a = r["novel_attr"]
        print(f"| {name} | {100 * r['base_top1']:.1f} | {100 * r['novel_top1']:.1f} | {100 * r['hm']:.1f} | "
              f"{100 * a['direction']:.1f} | {100 * a['colour_shape']:.1f} | {r['fit_seconds']:.0f} s |")


if __name__ == "__main__":
    main()
