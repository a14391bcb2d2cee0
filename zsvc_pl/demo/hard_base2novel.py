"""Base-to-novel on the harder world: every learnable part, alone and combined, over several seeds.

    python -m zsvc_pl.demo.hard_base2novel [--seeds 0 1 2 3 4] [--out demo_runs/hard] [--variants ...] [--in-domain]
    python -m zsvc_pl.demo.hard_base2novel --out demo_runs/hard --report    # the tables of the runs so far

For each seed the world is generated with that seed and every variant is a plain LightningCLI run of
configs/demo_hard.yaml with a few overrides and ``--seed_everything`` set to the seed. The first table gives
base, novel and HM as mean +- sample standard deviation over the seeds, and the mean fit time. Variants are
compared seed by seed (same world, same test videos), so the second table gives each variant's HM minus that of
zero-shot and of the reference combination as the mean paired difference with its 95 % interval (Student's t
over the seeds): a difference is outside the spread when its interval excludes 0. ``--in-domain`` also tests
each variant's model on a test set without the shift (for runs already in ``results.json``, their saved
checkpoints are tested; nothing is refitted), to measure what the shift costs, with the same paired interval.
Results are kept in ``results.json`` after each run: a rerun with more seeds or variants adds to it and skips what
it holds (each seed's runs are deterministic).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from zsvc_pl.cli import main as cli_main
from zsvc_pl.demo.hard_world import generate_hard_dataset, generate_in_domain_test, hard_base_novel
from zsvc_pl.train.callbacks import earlier_checkpoints

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo_hard.yaml"
_COOP = ["--model.ctx_init", "a video of"]
_TEMPORAL = ["--model.temporal", "transformer"]
_VPT = ["--model.vision_prompts", "4"]
_OFF = ["--model.text_reg_weight", "0", "--model.zs_mix", "0"]
_KGCOOP = ["--model.text_reg_weight", "8.0", "--model.zs_mix", "0"]
_KEEP_NOVEL = ["--model.text_reg_weight", "8.0", "--model.zs_mix", "0.2"]
VARIANTS: dict[str, list[str]] = {
    "zero-shot": [],
    "CoOp": _COOP + _OFF,
    "CoOp + KgCoOp": _COOP + _KGCOOP,
    "temporal transformer": _TEMPORAL + _OFF,
    "vision prompts": _VPT + _OFF,
    "CoOp + temporal": _COOP + _TEMPORAL + _OFF,
    "CoOp + temporal + KgCoOp + zero-shot mix": _COOP + _TEMPORAL + _KEEP_NOVEL,
    "CoOp + temporal + vision prompts + KgCoOp + mix": _COOP + _TEMPORAL + _VPT + _KEEP_NOVEL,
}


def prepare(out: Path, seed: int, train_per_class: int, test_per_class: int) -> Path:
    """Generate one seed's world (once) and its base class file; return the data folder."""
    data = out / "data"
    if not (data / "test").is_dir():
        generate_hard_dataset(data, train_per_class, test_per_class, seed=seed)
    (out / "base.txt").write_text("\n".join(hard_base_novel()[0]) + "\n")
    return data


def _options(name: str, data: Path, out: Path, seed: int, folder: Path) -> list[str]:
    extra = VARIANTS[name]
    cache = [] if "--model.vision_prompts" in extra else ["--data.feature_cache", str(out / "feature_cache")]
    return ["--config", str(CONFIG), "--data.root", str(data), "--data.base_novel", str(out / "base.txt"),
            "--seed_everything", str(seed), "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(folder), *cache, *extra]


def _folder(name: str, out: Path) -> Path:
    return out / name.replace(" + ", "+").replace(" ", "_")


def _scores(metrics) -> dict:
    res = {k.split("/")[-1]: float(v) for k, v in metrics.items() if k.startswith("test/")}
    return {k: res[k] for k in ("base_top1", "novel_top1", "hm")}


def evaluate_in_domain(name: str, out: Path, seed: int, per_class: int) -> dict:
    """Test one variant's model (its saved checkpoint, unless zero-shot) on the unshifted test set."""
    data = out / "data_in_domain"
    if not (data / "test").is_dir():
        generate_in_domain_test(data, per_class, seed=seed)
    folder = _folder(name, out)
    ckpt = ["--ckpt_path", str(folder / "checkpoints" / "last.ckpt")] if VARIANTS[name] else []
    cli = cli_main(["test", *_options(name, data, out, seed, folder / "in_domain"), *ckpt])
    return _scores(cli.trainer.callback_metrics)


def run_variant(name: str, data: Path, out: Path, seed: int) -> dict:
    """Fit (unless zero-shot) and test one variant; base/novel/HM and the fit time in seconds."""
    extra = VARIANTS[name]
    common = _options(name, data, out, seed, _folder(name, out))
    start = time.perf_counter()
    if not extra:
        cli = cli_main(["test", *common])
        metrics, fit_s = cli.trainer.callback_metrics, 0.0
    else:
        cli = cli_main(["fit", *common])
        fit_s = time.perf_counter() - start
        metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    return {**_scores(metrics), "fit_seconds": round(fit_s, 1)}


REFERENCE = "CoOp + temporal + KgCoOp + zero-shot mix"
# Student's t, 97.5 % quantile, by degrees of freedom (1-30); above 30, z + (z^3 + z) / (4 df) is within 0.003.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042}


def t_975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom."""
    return T_975[df] if df in T_975 else 1.96 + (1.96 ** 3 + 1.96) / (4 * df)


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of its 95 % confidence interval (Student's t; 0 for a single value)."""
    if len(values) < 2:
        return statistics.mean(values), 0.0
    t = t_975(len(values) - 1)
    return statistics.mean(values), t * statistics.stdev(values) / len(values) ** 0.5


def _paired(results: dict[str, dict[str, dict]], name: str, other: str, key: str = "hm") -> str:
    """``+d [lo, hi]`` for ``key``(name) - ``key``(other) over the seeds that ran both, in points."""
    if name == other:
        return "-"
    diffs = [100 * (r[name][key] - r[other][key]) for r in results.values() if name in r and other in r]
    if not diffs:
        return "-"
    mean, half = interval(diffs)
    mark = " *" if abs(mean) > half and len(diffs) > 1 else ""
    return f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}]{mark}"


def paired_rows(results: dict[str, dict[str, dict]]) -> list[str]:
    """Markdown rows: each variant's HM against zero-shot and against the reference, paired by seed, with the
    half-width of the 95 % interval of its own mean HM; its base top-1 against zero-shot; and its novel top-1
    minus zero-shot's, paired, and on the seed where that is lowest (with how many seeds are below zero-shot)."""
    rows = []
    for name in VARIANTS:
        hms = [100 * r[name]["hm"] for r in results.values() if name in r]
        if not hms:
            continue
        mean, half = interval(hms)
        novel = [100 * (r[name]["novel_top1"] - r["zero-shot"]["novel_top1"]) for r in results.values()
                 if name in r and "zero-shot" in r]
        lowest = f"{min(novel):+.1f} ({sum(d < 0 for d in novel)} of {len(novel)} below)" \
            if novel and name != "zero-shot" else "-"
        rows.append(f"| {name} | {mean:.1f} +- {half:.1f} | {_paired(results, name, 'zero-shot')} | "
                    f"{_paired(results, name, REFERENCE)} | {_paired(results, name, 'zero-shot', 'base_top1')} | "
                    f"{_paired(results, name, 'zero-shot', 'novel_top1')} | {lowest} |")
    return rows


def summary(results: dict[str, dict[str, dict]], in_domain: bool = False) -> list[str]:
    """Markdown rows: each variant's seeds run, base / novel / HM as mean +- sd over them (percent), and mean fit
    time (``in_domain``: the unshifted test set's, and the shifted test set's HM minus it)."""
    rows = []
    for name in VARIANTS:
        runs = [r[name] for r in results.values() if name in r]
        if in_domain:
            runs = [{**r["in_domain"], "fit_seconds": r["fit_seconds"], "shifted_hm": r["hm"]}
                    for r in runs if "in_domain" in r]
        if not runs:
            continue
        cells = []
        for key in ("base_top1", "novel_top1", "hm"):
            values = [100 * r[key] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} +- {sd:.1f}")
        if in_domain:
            mean, half = interval([100 * (r["shifted_hm"] - r["hm"]) for r in runs])
            cost = f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}]"
            rows.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {cost} |")
            continue
        fit = statistics.mean(r["fit_seconds"] for r in runs)
        rows.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {fit:.0f} s |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_runs/hard")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--train-per-class", type=int, default=16)
    parser.add_argument("--test-per-class", type=int, default=20)
    parser.add_argument("--in-domain", action="store_true", help="also test on an unshifted test set")
    parser.add_argument("--report", action="store_true", help="only print the tables of the runs in results.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    results_file = out / "results.json"
    if args.report and not results_file.is_file():
        parser.error(f"--report: no {results_file} (run without --report first, or pass the --out of a run)")
    results: dict[str, dict[str, dict]] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    todo = [] if args.report else [_folder(n, out / f"seed{s}") for s in args.seeds for n in args.variants
                                   if n not in results.get(str(s), {})]
    left = [folder for folder in todo if earlier_checkpoints(folder / "checkpoints")]
    if left:  # an interrupted fit: its folder holds checkpoints but results.json has no result of it
        parser.error(f"{left[0]} holds the checkpoints of a fit without a result in {results_file} (interrupted?): "
                     "remove that folder and run again")
    for seed in [] if args.report else args.seeds:
        seed_out = out / f"seed{seed}"
        if all(name in results.get(str(seed), {}) for name in args.variants) and not args.in_domain:
            continue  # a variant already in results.json is kept (each seed's runs are deterministic)
        data = prepare(seed_out, seed, args.train_per_class, args.test_per_class)
        for name in args.variants:
            done = results.get(str(seed), {}).get(name)
            if done is None:
                done = results.setdefault(str(seed), {})[name] = run_variant(name, data, seed_out, seed)
            if args.in_domain:
                done["in_domain"] = evaluate_in_domain(name, seed_out, seed, args.test_per_class)
            out.mkdir(parents=True, exist_ok=True)
            results_file.write_text(json.dumps(results, indent=1))  # kept after each run: a rerun adds to it
    print(f"\nseeds in {results_file}: {', '.join(results)}")
    print("\n| variant | seeds | base top-1 | novel top-1 | HM | fit time |")
    print("|---|---|---|---|---|---|")
    print("\n".join(summary(results)))
    print(f"\n| variant | HM, mean +- 95 % half-width | HM - zero-shot [95 %] | HM - {REFERENCE} [95 %] | "
          "base - zero-shot [95 %] | novel - zero-shot [95 %] | novel - zero-shot, lowest seed |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(paired_rows(results)))
    print("(paired by seed; * : the interval excludes 0)")
    if args.in_domain or any("in_domain" in v for r in results.values() for v in r.values()):
        print("\n| variant, unshifted test set | seeds | base top-1 | novel top-1 | HM | "
              "HM shifted - unshifted [95 %] |")
        print("|---|---|---|---|---|---|")
        print("\n".join(summary(results, in_domain=True)))


if __name__ == "__main__":
    main()
