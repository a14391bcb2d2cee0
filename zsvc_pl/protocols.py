"""The field's evaluation protocols, one command each, with the published numbers printed beside the measured ones.

    python -m zsvc_pl.protocols list
    python -m zsvc_pl.protocols run ucf101-zeroshot --root /data/UCF-101 --split-dir /data/ucfTrainTestlist
    python -m zsvc_pl.protocols run k600-zeroshot --root /data/k600/test --annotations /data/k600/test.csv
    python -m zsvc_pl.protocols run hmdb51-base2novel --root /data/hmdb51 --splits /src/ViFi-CLIP/datasets_splits
    python -m zsvc_pl.protocols run ssv2-fewshot --shots 2 4 --root /data/ssv2 --splits /src/ViFi-CLIP/datasets_splits
    ... -- --model.model_name ViT-B-32 --trainer.accelerator gpu     (options after -- go to every run)

Every split, seed or shot count is a plain ``python -m zsvc_pl test`` (or ``fit`` then ``test``) run in its own
folder under ``--out``, with its run card; the table gives each run, the mean and spread, and the references.
Class lists ship in ``zsvc_pl/assets/protocols`` (sources in each file's header); video lists are the dataset's
own (UCF101/HMDB51 split files, Kinetics CSVs) or ViFi-CLIP's ``datasets_splits`` folder (base-to-novel seeds
and few-shot lists), read from ``--splits``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from zsvc_pl.cli import main as cli_main
from zsvc_pl.train.callbacks import earlier_checkpoints

ASSETS = Path(__file__).parent / "assets" / "protocols"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
VIFI = "Rasheed et al., Fine-tuned CLIP models are efficient video learners (ViFi-CLIP), CVPR 2023"
FROSTER = "Huang et al., FROSTER: Frozen CLIP is a strong teacher for open-vocabulary action recognition, ICLR 2024"
B2N = ("base_top1", "novel_top1", "hm")


@dataclass(frozen=True)
class Protocol:
    """One protocol: what it needs, its runs, the metrics it reports and the published references."""

    title: str
    kind: str  # zeroshot | base2novel | fewshot
    dataset: str
    needs: tuple[str, ...]
    references: tuple[tuple[str, tuple[float, ...], str], ...]  # (system, values, source)
    metrics: tuple[str, ...] = ("top1",)


PROTOCOLS = {
    "ucf101-zeroshot": Protocol("UCF101, 3 official splits", "zeroshot", "ucf101", ("root", "split_dir"), (
        ("frozen CLIP ViT-B/16, 8 frames x 3 views", (73.8,), FROSTER),
        ("ViFi-CLIP (trained on K400), 32 frames", (76.8,), VIFI))),
    "hmdb51-zeroshot": Protocol("HMDB51, 3 official splits", "zeroshot", "hmdb51", ("root", "split_dir"), (
        ("frozen CLIP ViT-B/16, 8 frames x 3 views", (47.9,), FROSTER),
        ("ViFi-CLIP (trained on K400), 32 frames", (51.3,), VIFI))),
    "k600-zeroshot": Protocol("Kinetics-600 classes outside K400, 3 splits of 160", "zeroshot", "k600",
                              ("root", "annotations"), (
        ("frozen CLIP ViT-B/16, 8 frames x 3 views", (68.1,), FROSTER),
        ("ViFi-CLIP (trained on K400), 32 frames", (71.2,), VIFI))),
    **{f"{ds}-base2novel": Protocol(f"{title} base-to-novel, 16-shot base seeds s1-s3", "base2novel", ds,
                                    ("root", "splits"), (("frozen CLIP ViT-B/16", frozen, VIFI),
                                                         ("ViFi-CLIP, 32 frames", vifi, VIFI)), B2N)
       for ds, title, frozen, vifi in (
           ("k400", "Kinetics-400", (62.3, 53.4, 57.5), (76.4, 61.1, 67.9)),
           ("hmdb51", "HMDB51", (53.3, 46.8, 49.8), (73.8, 53.3, 61.9)),
           ("ucf101", "UCF101", (78.5, 63.6, 70.3), (92.9, 67.7, 78.3)),
           ("ssv2", "Something-Something v2", (4.9, 5.3, 5.1), (16.2, 12.1, 13.9)))},
    **{f"{ds}-fewshot": Protocol(f"{title} few-shot, K = 2, 4, 8, 16", "fewshot", ds, ("root", "splits"),
                                 (("ViFi-CLIP, 32 frames, K = 2 / 4 / 8 / 16", vifi, VIFI),))
       for ds, title, vifi in (("hmdb51", "HMDB51", (57.2, 62.7, 64.5, 66.8)),
                               ("ucf101", "UCF101", (80.7, 85.1, 90.0, 92.7)),
                               ("ssv2", "Something-Something v2", (6.2, 7.4, 8.5, 12.4)))},
}
_VIFI_DIRS = {"k400": "k400", "hmdb51": "hmdb", "ucf101": "ucf", "ssv2": "ssv2"}


def plan(name: str, args: argparse.Namespace) -> list[tuple[str, str, list[str]]]:
    """The runs of protocol ``name``: (run name, subcommand, CLI options)."""
    p = PROTOCOLS[name]
    missing = [f"--{n.replace('_', '-')}" for n in p.needs if getattr(args, n) is None]
    if missing:
        raise ValueError(f"protocol {name} needs {', '.join(missing)} (python -m zsvc_pl.protocols list)")
    for n in p.needs:
        if not Path(getattr(args, n)).exists():
            raise FileNotFoundError(f"--{n.replace('_', '-')} not found: {getattr(args, n)}")
    root = ["--data.root", args.root]
    if p.kind == "zeroshot" and p.dataset in ("ucf101", "hmdb51"):
        config = ["--config", str(CONFIGS / f"zeroshot_{p.dataset}.yaml"), *root, "--data.split_dir", args.split_dir]
        return [(f"split{k}", "test", [*config, "--data.fold", str(k)]) for k in args.splits_to_run]
    if p.kind == "zeroshot":
        config = ["--config", str(CONFIGS / "zeroshot_k600.yaml"), *root, "--data.test_list", args.annotations]
        return [(f"split{k}", "test", [*config, "--data.label_file", str(ASSETS / f"k600_zeroshot_split{k}.csv")])
                for k in args.splits_to_run]
    splits = Path(args.splits)
    if p.kind == "base2novel":
        lists = splits / "base2novel_splits" / f"{_VIFI_DIRS[p.dataset]}_splits"
        common = ["--config", str(CONFIGS / "base2novel_vifi.yaml"), *root,
                  "--data.label_file", str(ASSETS / f"{p.dataset}_base.csv"),
                  "--data.novel_label_file", str(ASSETS / f"{p.dataset}_novel.csv"),
                  "--data.test_list", str(lists / "base_val.txt"),
                  "--data.novel_test_list", str(lists / "novel_val.txt")]
        if args.zero_shot:
            return [("zeroshot", "test", common)]
        return [(f"s{k}", "fit", [*common, "--data.train_list", str(lists / f"fs_base_s{k}_train.txt")])
                for k in args.splits_to_run]
    lists = splits / f"{_VIFI_DIRS[p.dataset]}_splits"
    test = lists / ("validation.txt" if p.dataset == "ssv2" else "val1.txt")
    common = ["--config", str(CONFIGS / "fewshot_vifi.yaml"), *root, "--data.test_list", str(test),
              "--data.label_file", str(ASSETS / f"{p.dataset}_classes.csv")]
    if args.zero_shot:
        return [("zeroshot", "test", common)]
    return [(f"K{k}", "fit", [*common, "--data.train_list", str(lists / f"train1_few_shot_{k}.txt")])
            for k in args.shots]


def run(name: str, args: argparse.Namespace, extra: list[str]) -> dict[str, dict[str, float]]:
    """Run every planned run; returns each run's test metrics (fractions), also written to ``results.json``."""
    out = Path(args.out) / name
    planned = plan(name, args)
    taken = [out / run for run, command, _ in planned
             if command == "fit" and earlier_checkpoints(out / run / "checkpoints")]
    if taken:  # checked before the first run, not when its turn comes
        raise ValueError(f"{taken[0]} holds an earlier run's checkpoints: pass another --out, or remove it")
    results = {}
    for run_name, command, options in planned:
        folder = out / run_name
        cache_dir = Path(args.out) / f"cache-{PROTOCOLS[name].dataset}"
        cache = [] if args.no_cache else ["--data.feature_cache", str(cache_dir)]
        cli = cli_main([command, *options, *cache, "--trainer.default_root_dir", str(folder),
                        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", *extra])
        if command == "fit":
            cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
        metrics = cli.trainer.callback_metrics
        results[run_name] = {k.split("/")[-1]: float(v) for k, v in metrics.items() if k.startswith("test/")}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return results


def table(name: str, results: dict[str, dict[str, float]]) -> str:
    """A markdown table: each run, mean +- sample standard deviation, then the published references."""
    p = PROTOCOLS[name]
    heads = {"top1": "top-1", "base_top1": "base", "novel_top1": "novel", "hm": "HM"}
    lines = [f"{name}: {p.title}", "", "| run | " + " | ".join(heads[m] for m in p.metrics) + " |",
             "|---" * (len(p.metrics) + 1) + "|"]
    for run_name, r in results.items():
        lines.append(f"| zsvc_pl {run_name} | " + " | ".join(f"{100 * r[m]:.1f}" for m in p.metrics) + " |")
    if len(results) > 1 and p.kind != "fewshot":
        cells = []
        for m in p.metrics:
            values = [100 * r[m] for r in results.values()]
            cells.append(f"{statistics.mean(values):.1f} +- {statistics.stdev(values):.1f}")
        lines.append(f"| zsvc_pl mean +- sd over {len(results)} | " + " | ".join(cells) + " |")
    for system, values, source in p.references:
        shown = [f"{v:.1f}" for v in values] if p.kind != "fewshot" else [" / ".join(f"{v:.1f}" for v in values)]
        lines.append(f"| {system} [{source}] | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m zsvc_pl.protocols", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the protocols, what each needs, and the references")
    r = sub.add_parser("run", help="run one protocol")
    r.add_argument("protocol", choices=sorted(PROTOCOLS))
    r.add_argument("--root", help="the dataset's videos")
    r.add_argument("--split-dir", help="UCF101/HMDB51 official split files (ucfTrainTestlist, testTrainMulti_7030)")
    r.add_argument("--annotations", help="Kinetics-600 annotation CSV (the protocol's papers use the test set)")
    r.add_argument("--splits", help="ViFi-CLIP's datasets_splits folder (base-to-novel and few-shot video lists)")
    r.add_argument("--only", dest="splits_to_run", type=int, nargs="+", default=[1, 2, 3],
                   help="which splits (zero-shot) or seeds (base-to-novel) to run; default 1 2 3")
    r.add_argument("--shots", type=int, nargs="+", default=[2, 4, 8, 16], choices=[2, 4, 8, 16])
    r.add_argument("--zero-shot", action="store_true", help="base-to-novel/few-shot: test frozen CLIP, no training")
    r.add_argument("--no-cache", action="store_true", help="do not keep frame features between runs")
    r.add_argument("--out", default="runs/protocols")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name, p in PROTOCOLS.items():
            refs = "; ".join(f"{s}: {'/'.join(str(v) for v in vals)}" for s, vals, _ in p.references)
            print(f"{name}: {p.title}\n  needs {', '.join('--' + n.replace('_', '-') for n in p.needs)}\n  {refs}")
        return 0
    try:
        results = run(args.protocol, args, extra)
    except (ValueError, FileNotFoundError) as e:
        parser.exit(2, f"zsvc_pl.protocols: error: {e}\n")
    print(table(args.protocol, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
