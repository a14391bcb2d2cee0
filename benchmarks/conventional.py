"""The conventional pipeline that ``throughput.py`` compares against: plain decord at full size with no fallback,
PIL resize per frame, the label prompts encoded again for every batch."""

from __future__ import annotations

import time

import torch
from measure import peak_mb


def run_conventional(model: str, paths: list[str], labels: list[str], frames: int, batch: int) -> dict:
    import decord
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image
    from torchvision import transforms as T

    from zsvc_pl.model.backbone import load_clip
    from zsvc_pl.data.sampling import segment_indices

    bb = load_clip(model, "none")
    tf = T.Compose([T.Resize(bb.image_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(bb.image_size),
                    T.ToTensor(), T.Normalize(bb.mean, bb.std)])
    prompts = [f"a video of a person {label}." for label in labels]
    start = time.perf_counter()
    n = failed = 0
    with torch.inference_mode():
        for i in range(0, len(paths), batch):
            clips = []
            for p in paths[i : i + batch]:
                try:
                    vr = decord.VideoReader(p)
                    arr = vr.get_batch(segment_indices(len(vr), frames)).asnumpy()
                except Exception:  # plain decord, no fallback: counted as unreadable
                    failed += 1
                    continue
                clips.append(torch.stack([tf(Image.fromarray(np.ascontiguousarray(f))) for f in arr]))
            if not clips:
                continue
            text = F.normalize(bb.model.encode_text(bb.tokenizer(prompts)), dim=-1)
            video = torch.stack(clips)
            feats = F.normalize(bb.model.encode_image(video.flatten(0, 1)), dim=-1).view(len(clips), frames, -1)
            (F.normalize(feats.mean(1), dim=-1) @ text.T).softmax(-1)
            n += len(clips)
    return {"videos": n, "unreadable": failed, "seconds": time.perf_counter() - start, "peak_mb": peak_mb()}
