"""Labels by example and "none of these" on the demo world, training-free.

    python benchmarks/labels_by_example.py [--out demo_runs/examples] [--seed 0] [--weights 0.3]

A demo library with one folder per colour-shape pair (24 labels; ``train/`` 4 clips each, one per direction
of motion, the pool of examples and of the labelled sample; ``test/`` 8 each) is generated with ``--seed``,
and classified by the pretrained demo backbone:

1. Labels by example: every label renamed with an invented word the text tower cannot know ("a blicket"), given
   0 (text only), 1, 2 or 4 example clips; the same with the real names, to show examples do not hurt words.
2. None of these: 12 of the 24 labels are in the list; test videos of the other 12 should get ``none``. The
   open-set score's AUROC (known against unknown test videos), and, for thresholds fitted on the labelled
   ``train/`` clips of the listed labels at several recalls: coverage of known videos, accuracy on those kept,
   unknown videos rejected, and accuracy over all test videos counting ``none`` right for the unknown ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from zsvc_pl import ZeroShotVideoClassifier, generate_dataset
from zsvc_pl.model.examples import DEFAULT_WEIGHT
from zsvc_pl.model.abstention import auroc, fit_threshold, open_set_score

INVENTED = ["blicket", "dax", "wug", "toma", "fep", "zorp", "kiki", "bouba", "gazzer", "mib", "tupa", "lorp",
            "quell", "vash", "nib", "sprock", "glim", "torv", "plem", "yorn", "brask", "flin", "drub", "snee"]


def clips(root: Path, split: str, label: str) -> list[str]:
    """A label's clips, one direction of motion after another (``bottom_000, left_000, ...``)."""
    paths = sorted(str(p) for p in (root / split / label).glob("*.mp4"))
    return sorted(paths, key=lambda p: Path(p).stem.split("_")[1])


def by_example(clf: ZeroShotVideoClassifier, root: Path, names: list[str], weights: list[float]) -> list[dict]:
    test = [(p, i) for i, n in enumerate(names) for p in clips(root, "test", n)]
    paths, truth = [p for p, _ in test], torch.tensor([i for _, i in test])
    rows = []
    for weight in weights:
        clf.example_weight = weight
        for shots in (0, 1, 2, 4):
            row = {"weight": weight, "examples": shots}
            for kind, shown in (("invented", [f"a {w}" for w in INVENTED]), ("real", names)):
                labels = {shown[i]: clips(root, "train", n)[:shots] for i, n in enumerate(names)}
                probs = clf.probabilities(paths, labels)
                row[kind] = round(100 * float((probs.argmax(1) == truth).float().mean()), 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def none_of_these(clf: ZeroShotVideoClassifier, root: Path, names: list[str]) -> dict:
    listed, held_out = names[::2], names[1::2]
    known = [(p, i) for i, n in enumerate(listed) for p in clips(root, "test", n)]
    unknown = [p for n in held_out for p in clips(root, "test", n)]
    sample = [p for n in listed for p in clips(root, "train", n)]
    probs, sims = clf.scores([p for p, _ in known] + unknown, listed)
    truth = torch.tensor([i for _, i in known])
    score, right, n = open_set_score(sims), probs[: len(known)].argmax(1) == truth, len(known)
    top_prob = probs.max(1).values
    out = {"listed": len(listed), "held_out": len(held_out), "known_test": n, "unknown_test": len(unknown),
           "top1_known_no_abstention": round(100 * float(right.float().mean()), 1),
           "auroc_max_similarity": round(auroc(score[:n], score[n:]), 3),
           "auroc_max_probability": round(auroc(top_prob[:n], top_prob[n:]), 3), "thresholds": []}
    sample_score = open_set_score(clf.scores(sample, listed)[1])
    for recall in (0.99, 0.95, 0.9, 0.8):
        t = fit_threshold(sample_score, recall)
        kept, rejected = score[:n] >= t, score[n:] < t
        out["thresholds"].append({
            "fitted_recall": recall, "threshold": round(t, 3),
            "coverage_known": round(100 * float(kept.float().mean()), 1),
            "top1_on_kept": round(100 * float(right[kept].float().mean()), 1) if kept.any() else None,
            "unknown_rejected": round(100 * float(rejected.float().mean()), 1),
            "accuracy_all": round(100 * float(torch.cat([right & kept, rejected]).float().mean()), 1)})
    print(json.dumps(out, indent=1), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_runs/examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", type=float, nargs="+", default=[DEFAULT_WEIGHT],
                        help="example weights to compare (cosine units; see zsvc_pl.model.examples)")
    args = parser.parse_args()
    root = Path(args.out) / f"world-{args.seed}"
    if not (root / "test").is_dir():
        generate_dataset(root, {"train": 1, "test": 2}, seed=args.seed, labels="static")
    names = sorted(p.name for p in (root / "test").iterdir())
    clf = ZeroShotVideoClassifier("demo", "demo", frame_size=64, num_workers=0,
                                  feature_cache=Path(args.out) / f"cache-{args.seed}")
    result = {"seed": args.seed, "by_example": by_example(clf, root, names, args.weights),
              "none_of_these": none_of_these(clf, root, names)}
    (Path(args.out) / f"result-{args.seed}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
