"""Decoder backends side by side on real clips: sampled frames per second per core, exactness, clips read.

    python benchmarks/decoders.py --videos ../shared/realvideos

For every labelled clip of the manifest and every backend: open the file and read 8 uniformly sampled frames
at the model's working size (shorter side 224), timed in CPU seconds of this process with one decoding thread
(so frames/s per core); then read the same frames at full size and compare them with a full sequential PyAV
decode (bit-exact or not). Backends: zsvc_pl's sparse PyAV reader, decord, sequential PyAV, and torchcodec
(PyTorch's decoder; needs FFmpeg's shared libraries, e.g. Debian's libavcodec59) when it loads.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch
from quantization import real_clips

from zsvc_pl.data.decoding import open_video, read_frames
from zsvc_pl.data.sampling import segment_indices

SHORT_SIDE = 224


def zsvc_reader(backend: str) -> Callable[[str, int | None], np.ndarray]:
    def read(path: str, short_side: int | None) -> np.ndarray:
        video = open_video(path, short_side, backend)
        return read_frames(video, segment_indices(video.num_frames, 8), path)
    return read


def torchcodec_reader() -> Callable[[str, int | None], np.ndarray] | None:
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception:  # not installed, or FFmpeg's libraries missing
        return None

    def read(path: str, short_side: int | None) -> np.ndarray:
        decoder = VideoDecoder(path, dimension_order="NCHW", num_ffmpeg_threads=1, seek_mode="exact")
        frames = decoder.get_frames_at(segment_indices(decoder.metadata.num_frames, 8)).data
        if short_side and min(frames.shape[-2:]) > short_side:
            h, w = frames.shape[-2:]
            size = (round(h * short_side / min(h, w)), round(w * short_side / min(h, w)))
            frames = torch.nn.functional.interpolate(frames.float(), size=size, mode="bilinear", antialias=True)
            frames = frames.round().clamp(0, 255).to(torch.uint8)
        return frames.permute(0, 2, 3, 1).numpy()
    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", required=True, help="real clips folder with manifest.csv")
    parser.add_argument("--limit", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    clips, _ = real_clips(args.videos, args.limit)
    backends = {"zsvc_pl auto (sparse PyAV; decord for AVI)": zsvc_reader("auto"),
                "decord first": zsvc_reader("decord"), "sequential PyAV": zsvc_reader("pyav")}
    codec = torchcodec_reader()
    if codec is not None:
        backends["torchcodec"] = codec
    reference: dict[str, np.ndarray] = {}
    res: dict = {}
    for name, read in backends.items():
        r = res[name] = {"clips": len(clips), "read": 0, "exact": 0, "cpu_seconds": 0.0, "frames": 0}
        for path in clips:
            try:
                start = time.process_time()
                frames = read(path, SHORT_SIDE)
                r["cpu_seconds"] += time.process_time() - start
                r["frames"] += len(frames)
                r["read"] += 1
                full = read(path, None)
                if path not in reference:
                    reference[path] = zsvc_reader("pyav")(path, None)
                expected = reference[path]
                r["exact"] += int(full.shape == expected.shape and np.array_equal(full, expected))
            except Exception:
                continue
        r["frames_per_s_per_core"] = r["frames"] / max(r["cpu_seconds"], 1e-9)
    print(json.dumps(res, indent=1))
    print("\n| backend | sampled frames/s per core | bit-exact with a full PyAV decode | clips read |\n"
          "|---|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {r['frames_per_s_per_core']:.0f} | {r['exact']} of {r['read']} | "
              f"{r['read']} of {r['clips']} |")


if __name__ == "__main__":
    main()
