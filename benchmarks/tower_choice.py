"""What ``tower="auto"`` picks on this machine for a backbone, and the figures it picked by.

    python benchmarks/tower_choice.py --model ViT-B-32 [--pretrained none] [--again]

Measured now unless a choice is kept in ``$XDG_CACHE_HOME/zsvc_pl/towers.json`` (``--again`` measures anyway);
the same measurement ``--model.tower auto`` makes on first use (``zsvc_pl.model.tower_choice``).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from zsvc_pl.model.backbone import load_clip
from zsvc_pl.model.tower_choice import choose_tower


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="what tower=auto picks on this machine", allow_abbrev=False)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none", help="weights do not change speed: none is random")
    parser.add_argument("--again", action="store_true", help="measure even when a choice is kept")
    args = parser.parse_args(argv)
    bb = load_clip(args.model, args.pretrained)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    tower, entry = choose_tower(bb.model, bb.identity, bb.image_size, device, again=args.again)
    print(json.dumps({**entry, "seconds": round(time.perf_counter() - start, 1)}, indent=1))


if __name__ == "__main__":
    main()
