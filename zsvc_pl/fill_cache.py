"""Fill the feature cache over a dataset ahead of ``fit``, ``validate`` or ``test``.

    python -m zsvc_pl.fill_cache --config configs/demo_base2novel.yaml --data.feature_cache cache/ [--stages fit test]

Takes the options of ``python -m zsvc_pl fit`` (config, ``--model.*``, ``--data.*``). Training videos get
``data.cache_positions`` frames each, among which every epoch draws its own; evaluation videos get the frames
``validate``/``test`` read. Each entry is written atomically as soon as it is encoded, so an interrupted fill
resumes where it stopped: entries already present are read, not decoded again.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import torch
from tqdm import tqdm

from zsvc_pl.cli import UsageError, main as cli_main
from zsvc_pl.data.datamodule import VideoDataModule
from zsvc_pl.train.features import batch_features
from zsvc_pl.train.task import VideoClassificationTask

STAGES = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


def fill(task: VideoClassificationTask, dm: VideoDataModule, stages: list[str]) -> dict[str, Counter]:
    """Encode every video of ``stages``' datasets not yet in ``dm.feature_cache``; counts per dataset."""
    if dm.feature_cache is None:
        raise UsageError("give --data.feature_cache DIR: the folder to fill")
    if "fit" in stages and task.model.trains_on_pixels:
        raise UsageError("this model trains a part that acts on the pixels: its training features cannot be cached")
    cache = dm.feature_cache.bind(task.model.feature_identity, task.model.embed_dim)
    model = task.model.eval()
    counts: dict[str, Counter] = {}
    for stage in stages:
        dm.setup(stage)
        for name in STAGES[stage]:
            c = counts.setdefault(name, Counter())
            for batch in tqdm(getattr(dm, f"{name}_dataloader")(), desc=f"cache {name}", unit="batch"):
                c["encoded"] += len(batch["video_pos"])
                c["already cached"] += len(batch.get("features_pos", []))
                c["unreadable"] += len(batch["errors"])
                if batch["path"]:
                    with torch.inference_mode():
                        batch_features(model, batch, cache)
    return counts


def main(args: list[str] | None = None) -> dict[str, Counter]:
    """Parse like ``python -m zsvc_pl fit`` (plus ``--stages``), fill, print one line per dataset."""
    stages_parser = argparse.ArgumentParser(prog="python -m zsvc_pl.fill_cache", add_help=False)
    stages_parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=["fit"])
    known, args = stages_parser.parse_known_args(sys.argv[1:] if args is None else args)
    cli = cli_main(args, run=False)
    counts = fill(cli.model, cli.datamodule, known.stages)
    for name, c in counts.items():
        print(f"{name}: {c['encoded']} encoded, {c['already cached']} already cached, {c['unreadable']} unreadable "
              f"-> {cli.datamodule.feature_cache.folder}")
    return counts


if __name__ == "__main__":
    main()
