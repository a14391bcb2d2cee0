"""Moderation and filtering: flag videos where a label passes its threshold, with the time span where it peaks.

    python -m zsvc_pl.moderation --rules rules.yaml --videos /videos --out flags.csv --model-name ViT-B-32

rules.yaml::

    flags:                 # label: threshold on its per-frame probability
      a person holding a gun: 0.5
      a fight: 0.6
    others:                # ordinary content the flags are compared against (softmax over flags + others)
      - a person talking
      - a landscape
    abstain: 0.25          # optional: frames whose best similarity to any label is lower show none of them
                           # and flag nothing (test/abstain_at_95 on a labelled sample suggests a value)

A video that cannot be read is not checked, which is not the same as clean: such videos are listed with their
reasons in ``<out>.unreadable.csv`` beside the flags (``flags.unreadable.csv``), and the exit status says whether
every video was checked: 0 all of them, 1 the flags are written but some videos could not be read, 2 a mistake
in the command or no video could be read (then no flags file is written).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from zsvc_pl.data.annotations import list_videos
from zsvc_pl.data.decoding import VideoDecodeError
from zsvc_pl.data.outputs import atomic_write_text, check_writable, csv_text
from zsvc_pl.timeline import Flag
from zsvc_pl.yaml_files import number, read_yaml

if TYPE_CHECKING:
    from zsvc_pl.api import ZeroShotVideoClassifier


def load_rules(path: str | Path) -> tuple[dict[str, float], list[str], float | None]:
    """Thresholds per flagged label, the list of ordinary labels and the abstention threshold, from YAML."""
    data = read_yaml(path, "rules file")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected 'flags:' (label: threshold) and 'others:' (a list of labels)")
    unknown = sorted(set(map(str, data)) - {"flags", "others", "abstain"})
    if unknown:  # a misspelt 'abstain' would silently flag more
        raise ValueError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}: the rules take flags, others, "
                         "abstain")
    raw = data.get("flags") or {}
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: no 'flags' (label: threshold) given")
    flags = {}
    for label, value in raw.items():
        if not isinstance(label, str):  # `yes:` is a boolean and `1:` a number to YAML: quote such labels
            raise ValueError(f"{path}: flag label {label!r} is not text: quote it")
        flags[label] = number(value, f"{path}: flag {label!r}: threshold", 0, 1)
        if flags[label] == 0:
            raise ValueError(f"{path}: flag {label!r}: a threshold of 0 flags every video; use one in (0, 1]")
    others = data.get("others") or []
    if not isinstance(others, list) or not all(isinstance(x, str) for x in others):
        raise ValueError(f"{path}: 'others' must be a list of labels (text; quote labels YAML reads as numbers "
                         f"or booleans), got {others!r}"[:300])
    abstain = data.get("abstain")
    abstain = None if abstain is None else number(abstain, f"{path}: 'abstain' (a similarity)", -1, 1)
    return flags, list(others), abstain


def flag_videos(model: ZeroShotVideoClassifier, videos: Sequence[str], flags: dict[str, float],
                others: Sequence[str] = (), num_frames: int | None = None,
                abstain: float | None = None) -> tuple[list[Flag], list[tuple[str, str]]]:
    """Flags for every video (per-frame probabilities over flags + others; with ``abstain``, frames far from
    every label flag nothing), and the unreadable videos."""
    labels = list(flags) + [o for o in others if o not in flags]
    found, errors = [], []
    for path in videos:
        try:
            tl = model.timeline(path, labels, num_frames)
        except VideoDecodeError as e:
            errors.append((e.path, e.reason))
            continue
        found += tl.flags(flags, abstain)
    return found, errors


def main(argv: list[str] | None = None) -> int:
    """Flag a folder; returns 0 when every video was checked, 1 when some could not be read, or exits 2 with one
    line on a mistake or when no video could be read."""
    from zsvc_pl.api import ZeroShotVideoClassifier

    parser = argparse.ArgumentParser(description="flag videos whose labels pass their thresholds")
    parser.add_argument("--rules", required=True)
    parser.add_argument("--videos", required=True, help="a folder (recursive) or one video")
    parser.add_argument("--out", default="flags.csv")
    parser.add_argument("--model-name", default="ViT-B-32")
    parser.add_argument("--pretrained", default="openai")
    parser.add_argument("--num-frames", type=int, default=None, help="frames per video (default: 8)")
    args = parser.parse_args(argv)
    unreadable = unreadable_file(args.out)
    try:
        flags, others, abstain = load_rules(args.rules)
        videos = list_videos(args.videos)
        if not videos:
            raise ValueError(f"no video files under {args.videos}")
        check_writable(args.out)  # before the work, not after it
        model = ZeroShotVideoClassifier(model_name=args.model_name, pretrained=args.pretrained)
        found, errors = flag_videos(model, videos, flags, others, args.num_frames, abstain)
        if len(errors) < len(videos):  # the flags first: they are the work
            atomic_write_text(args.out, csv_text(list(Flag.__dataclass_fields__),
                                                 [list(asdict(x).values()) for x in found]))
        if errors:
            atomic_write_text(unreadable, csv_text(["path", "reason"], errors))
        else:
            unreadable.unlink(missing_ok=True)  # it belonged to the flags this run replaces
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        parser.exit(2, f"zsvc_pl.moderation: error: {str(e).splitlines()[0]}\n")
    for path, reason in errors:
        print(f"skipped {path}: {reason}")
    if len(errors) == len(videos):
        parser.exit(2, f"zsvc_pl.moderation: error: no video could be read ({len(errors)} skipped, each with its "
                       f"reason in {unreadable}); nothing was checked, so no flags were written\n")
    print(f"{len(found)} flag(s) in {len({x.path for x in found})} of {len(videos)} videos -> {args.out}")
    if errors:
        print(f"{len(errors)} video(s) could not be read and were not checked: listed in {unreadable}")
        return 1
    return 0


def unreadable_file(out: str | Path) -> Path:
    """Where the videos that could not be checked are listed: ``flags.csv`` -> ``flags.unreadable.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.unreadable.csv")


if __name__ == "__main__":
    sys.exit(main())
