"""Text-to-video search: index a folder of videos once, then query it with free text.

    python -m zsvc_pl.search index /videos --index videos.idx --model-name ViT-B-32 --pretrained openai
    python -m zsvc_pl.search query "a person riding a horse" --index videos.idx --top-k 5

The index stores video embeddings with each file's size and modification time; indexing again adds new or
changed files and drops deleted ones without re-encoding the rest. Frame features go to the feature cache
beside the index, so switching to another label set or re-indexing is cheap.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import torch

from zsvc_pl.data.datasets import list_videos
from zsvc_pl.data.decoding import VideoDecodeError


class VideoIndex:
    """Embeddings ``[N, D]`` of videos with the file stamps they were computed from."""

    def __init__(self, backbone: str, paths: list[str] | None = None, stamps: list[tuple[int, int]] | None = None,
                 embeddings: torch.Tensor | None = None) -> None:
        self.backbone = backbone
        self.paths = paths or []
        self.stamps = stamps or []
        self.embeddings = embeddings if embeddings is not None else torch.empty(0, 0)

    @staticmethod
    def _stamp(path: str) -> tuple[int, int]:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns

    def update(self, model, videos: Sequence[str], batch_size: int = 8) -> dict[str, int]:
        """Make the index hold exactly ``videos``: encode new or changed files only. Returns counts."""
        if model.backbone_identity != self.backbone:
            raise ValueError(f"index was built with backbone {self.backbone}, model is {model.backbone_identity}")
        keep = {p: i for i, (p, s) in enumerate(zip(self.paths, self.stamps)) if p in set(videos)
                and os.path.exists(p) and self._stamp(p) == s}
        todo = [p for p in videos if p not in keep]
        new_emb, new_paths, failed = [], [], 0
        for p in todo:
            try:
                new_emb.append(model.encode_videos([p], batch_size=1))
                new_paths.append(p)
            except VideoDecodeError:
                failed += 1
        kept_paths = list(keep)
        parts = [self.embeddings[list(keep.values())]] if keep else []
        self.embeddings = torch.cat(parts + new_emb) if parts or new_emb else torch.empty(0, 0)
        self.paths = kept_paths + new_paths
        self.stamps = [self._stamp(p) for p in self.paths]
        return {"kept": len(kept_paths), "added": len(new_paths), "failed": failed}

    def search(self, model, query: str, top_k: int = 5) -> list[tuple[str, float]]:
        """The ``top_k`` videos most similar to ``query`` (cosine similarity), best first."""
        if not self.paths:
            return []
        text = model.encode_labels([query]).to(self.embeddings.device)
        scores = (self.embeddings @ text.T).squeeze(1)
        best = scores.topk(min(top_k, len(self.paths)))
        return [(self.paths[i], float(s)) for s, i in zip(best.values.tolist(), best.indices.tolist())]

    def save(self, path: str | Path) -> None:
        torch.save({"backbone": self.backbone, "paths": self.paths, "stamps": self.stamps,
                    "embeddings": self.embeddings}, path)

    @classmethod
    def load(cls, path: str | Path) -> "VideoIndex":
        d = torch.load(path, weights_only=True)
        return cls(d["backbone"], d["paths"], [tuple(s) for s in d["stamps"]], d["embeddings"])


def main(argv: list[str] | None = None) -> None:
    from zsvc_pl.module import ZeroShotVideoClassifier

    parser = argparse.ArgumentParser(description="index a video folder, then search it with free text")
    parser.add_argument("command", choices=["index", "query"])
    parser.add_argument("target", help="folder to index, or the query text")
    parser.add_argument("--index", required=True, help="index file")
    parser.add_argument("--model-name", default="ViT-B-32")
    parser.add_argument("--pretrained", default="openai")
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args(argv)
    index_file = Path(args.index)
    cache = index_file.with_name(index_file.name + ".features")
    model = ZeroShotVideoClassifier(model_name=args.model_name, pretrained=args.pretrained,
                                    num_frames=args.num_frames, feature_cache=str(cache))
    index = VideoIndex.load(index_file) if index_file.exists() else VideoIndex(model.backbone_identity)
    if args.command == "index":
        counts = index.update(model, list_videos(args.target))
        index.save(index_file)
        print(f"indexed {len(index.paths)} videos ({counts['added']} encoded, {counts['kept']} unchanged, "
              f"{counts['failed']} unreadable) -> {index_file}")
    else:
        for rank, (path, score) in enumerate(index.search(model, args.target, args.top_k), 1):
            print(f"{rank}. {score:.3f}  {path}")


if __name__ == "__main__":
    main()
