"""Moderation and filtering: flag videos where a label passes its threshold, with the time span where it peaks.

    python -m zsvc_pl.moderation --rules rules.yaml --videos /videos --out flags.csv --model-name ViT-B-32

rules.yaml::

    flags:                 # label: threshold on its per-frame probability
      a person holding a gun: 0.5
      a fight: 0.6
    others:                # ordinary content the flags are compared against (softmax over flags + others)
      - a person talking
      - a landscape
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from zsvc_pl.data.datasets import list_videos
from zsvc_pl.data.decoding import VideoDecodeError
from zsvc_pl.timeline import video_timeline


@dataclass
class Flag:
    """One label that passed its threshold in one video, and when."""

    path: str
    label: str
    score: float
    peak_s: float
    start_s: float
    end_s: float


def load_rules(path: str | Path) -> tuple[dict[str, float], list[str]]:
    """Thresholds per flagged label and the list of ordinary labels, from YAML."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    flags = {str(k): float(v) for k, v in (data.get("flags") or {}).items()}
    if not flags:
        raise ValueError(f"{path}: no 'flags' (label: threshold) given")
    bad = {k: v for k, v in flags.items() if not 0 < v <= 1}
    if bad:
        raise ValueError(f"{path}: thresholds must be in (0, 1]: {bad}")
    return flags, [str(x) for x in data.get("others") or []]


def flag_videos(model, videos: Sequence[str], flags: dict[str, float], others: Sequence[str] = (),
                num_frames: int = 16) -> tuple[list[Flag], list[tuple[str, str]]]:
    """Flags for every video (per-frame probabilities over flags + others), and the unreadable videos."""
    labels = list(flags) + [o for o in others if o not in flags]
    found, errors = [], []
    for path in videos:
        try:
            tl = video_timeline(model, path, labels, num_frames)
        except VideoDecodeError as e:
            errors.append((e.path, e.reason))
            continue
        for label, threshold in flags.items():
            span = tl.span(label, threshold)
            if span:
                peak_s, score = tl.peak(label)
                found.append(Flag(str(path), label, round(score, 4), round(peak_s, 2), round(span[0], 2),
                                  round(span[1], 2)))
    return found, errors


def main(argv: list[str] | None = None) -> None:
    from zsvc_pl.module import ZeroShotVideoClassifier

    parser = argparse.ArgumentParser(description="flag videos whose labels pass their thresholds")
    parser.add_argument("--rules", required=True)
    parser.add_argument("--videos", required=True, help="a folder (recursive) or one video")
    parser.add_argument("--out", default="flags.csv")
    parser.add_argument("--model-name", default="ViT-B-32")
    parser.add_argument("--pretrained", default="openai")
    parser.add_argument("--num-frames", type=int, default=16)
    args = parser.parse_args(argv)
    flags, others = load_rules(args.rules)
    model = ZeroShotVideoClassifier(model_name=args.model_name, pretrained=args.pretrained)
    videos = list_videos(args.videos)
    found, errors = flag_videos(model, videos, flags, others, args.num_frames)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Flag.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(x) for x in found)
    for path, reason in errors:
        print(f"skipped {path}: {reason}")
    print(f"{len(found)} flag(s) in {len({x.path for x in found})} of {len(videos)} videos -> {args.out}")


if __name__ == "__main__":
    main()
