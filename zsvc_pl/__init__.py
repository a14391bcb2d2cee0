"""zsvc_pl: zero-shot video classification with a frozen CLIP model, on PyTorch Lightning."""

import os

# Videos decode in DataLoader worker processes on the cores the image tower's OpenMP threads use. Spinning
# OpenMP threads (the default wait policy) take CPU from those workers: on 2 cores, end to end over 72 real clips
# went from 1.14x to 1.09x the encoder-only bound with passive waiting, the bound itself unchanged
# (benchmarks/throughput.py --omp-wait-policy ACTIVE|PASSIVE). A value the user set wins; it takes effect when
# zsvc_pl is imported before torch (python -m zsvc_pl, the demo and benchmark scripts).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from zsvc_pl.backbone import BackboneLoadError, load_clip  # noqa: E402
from zsvc_pl.data import VideoDataModule, VideoDecodeError  # noqa: E402
from zsvc_pl.demo.world import generate_dataset  # noqa: E402
from zsvc_pl.module import BackboneMismatchError, ZeroShotVideoClassifier  # noqa: E402

__version__ = "0.1.0"

__all__ = ["ZeroShotVideoClassifier", "VideoDataModule", "load_clip", "BackboneLoadError",
           "BackboneMismatchError", "VideoDecodeError", "generate_dataset", "__version__"]
