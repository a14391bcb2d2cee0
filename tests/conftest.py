"""Shared fixtures: a tiny open_clip model saved as a real checkpoint, and small generated videos."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
torch.set_num_threads(2)

ASSETS = Path(__file__).parent / "assets"
TINY_CONFIG = ASSETS / "tiny-clip.json"
FEW_CLASSES = [("red", "circle", "left"), ("red", "circle", "right"), ("blue", "square", "top"),
               ("green", "triangle", "bottom")]


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> str:
    """Random weights of the tiny architecture, saved in open_clip's checkpoint format."""
    import open_clip

    open_clip.add_model_config(TINY_CONFIG)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "tiny-clip.pt"
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_model(tiny_ckpt):
    from zsvc_pl import ZeroShotVideoClassifier

    return ZeroShotVideoClassifier(model_name=str(TINY_CONFIG), pretrained=tiny_ckpt, num_frames=4)


@pytest.fixture(scope="session")
def video_root(tmp_path_factory) -> Path:
    """A folder-per-class dataset with train/val/test splits: 4 classes, 64 px, 8 frames."""
    from zsvc_pl.demo.world import generate_dataset

    root = tmp_path_factory.mktemp("videos")
    return generate_dataset(root, {"train": 2, "val": 1, "test": 2}, classes=FEW_CLASSES, size=64, num_frames=8)


@pytest.fixture(scope="session")
def demo_model():
    """The shipped demo backbone (skipped if the weights are not in the package yet)."""
    from zsvc_pl import ZeroShotVideoClassifier
    from zsvc_pl.model.backbone import DEMO_WEIGHTS

    if not DEMO_WEIGHTS.is_file():
        pytest.skip("demo weights not built")
    return ZeroShotVideoClassifier(model_name="demo", pretrained="demo", num_frames=8)


@pytest.fixture(scope="session")
def ramp_video(tmp_path_factory) -> str:
    """20 frames at 10 fps; frame i is a flat grey of level 10 * i."""
    import numpy as np

    from zsvc_pl.demo.world import write_video

    path = tmp_path_factory.mktemp("dec") / "ramp.mp4"
    write_video(path, np.stack([np.full((48, 64, 3), 10 * i, dtype=np.uint8) for i in range(20)]), fps=10)
    return str(path)


@contextmanager
def lock_held_elsewhere(target: str | Path) -> Iterator[None]:
    """Another process holds ``output_lock(target)`` (as a concurrent run would) until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from zsvc_pl.data.outputs import output_lock\n"
        f"with output_lock({str(target)!r}):\n    print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()
