"""Text-to-video search: index a folder of videos once, then query it with free text, find moments, or find
videos like a given one.

    python -m zsvc_pl.search index /videos --index videos.idx --model-name ViT-B-32 --pretrained openai
    python -m zsvc_pl.search query "a person riding a horse" --index videos.idx --top-k 5
    python -m zsvc_pl.search query "a person riding a horse" --index videos.idx --moments   # CSV path,start,end,score
    python -m zsvc_pl.search like /videos/horse.mp4 --index videos.idx                      # more like this
    python -m zsvc_pl.search like /videos/match.mp4 --start 12 --end 15 --index videos.idx  # like this moment

The index stores video embeddings with each file's size and modification time (taken before it is read), and the
backbone (name and weights) and frame sampling they were made with; indexing again adds new or changed files and
drops deleted ones without re-encoding the rest, and with another sampling (``--num-frames``) encodes every video
again, so that one index never mixes two samplings. ``query`` rebuilds that backbone unless told otherwise, and
refuses another one. Frame features go to the feature cache beside the index. The index file is replaced
atomically and checked on load. From ``vector_index.ANN_MIN`` videos (10^5) an approximate index (FAISS IVF-Flat,
optional) is written beside it (``.ann``) and serves text and video queries. For
moments the index also keeps each video's frame features and their times (from the same decode); a
moment is the stretch of frames around a video's best frame for the query that score at least halfway
between the video's lowest frame score and that peak (full width at half maximum), padded by half a frame
step on each side.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from zsvc_pl import vector_index
from zsvc_pl.data.annotations import list_videos
from zsvc_pl.data.outputs import (
    atomic_write,
    atomic_write_text,
    check_writable,
    csv_text,
    file_stamp,
    output_lock,
    printable,
)
from zsvc_pl.vector_index import ApproximateIndex, ann_available, nearest

if TYPE_CHECKING:
    from zsvc_pl.api import ZeroShotVideoClassifier


class IndexFileError(ValueError):
    """An index file that cannot be used; the message names it."""


class VideoIndex:
    """Embeddings ``[N, D]`` of videos with the file stamps they were computed from."""

    def __init__(self, backbone: str, paths: list[str] | None = None, stamps: list[list[int]] | None = None,
                 embeddings: torch.Tensor | None = None, model_name: str | None = None,
                 pretrained: str | None = None, frames: list[torch.Tensor] | None = None,
                 times: list[list[float]] | None = None, sampling: str | None = None,
                 num_frames: int | None = None) -> None:
        self.backbone = backbone
        self.sampling, self.num_frames = sampling, num_frames  # how the videos were read (None: older indexes)
        self.model_name, self.pretrained = model_name, pretrained
        self.paths = paths or []
        self.stamps = stamps or []
        self.embeddings = embeddings if embeddings is not None else torch.empty(0, 0)
        self.frames = frames if frames is not None else []  # per video: frame features [T, D]
        self.times = times if times is not None else []  # per video: seconds of those frames
        self.ann: ApproximateIndex | None = None  # from ANN_MIN videos, with faiss: see zsvc_pl.vector_index
        self.errors: list[tuple[str, str]] = []  # (path, reason) of the files the last update could not read
        self._ann_stale = False

    def check(self, clf: ZeroShotVideoClassifier, top_k: int | None = None) -> None:
        """Refuse a classifier whose backbone is not the one the index was built with, and a ``top_k`` below 1."""
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k (videos to return) must be at least 1, got {top_k}")
        if clf.backbone_identity != self.backbone:
            raise IndexFileError(f"index was built with backbone {self.backbone}, the model is "
                              f"{clf.backbone_identity}: query with the index's backbone or index again")

    def update(self, model: ZeroShotVideoClassifier, videos: Sequence[str], batch_size: int = 8) -> dict[str, int]:
        """Make the index hold exactly ``videos`` as ``model`` reads them: encode new or changed files only, or
        every file when the model samples frames otherwise than the index did. Returns counts."""
        self.check(model)
        reader = model.reader()
        resampled = self.sampling != reader.sampling_key and bool(self.paths)
        wanted = set() if resampled else set(videos)
        keep = {p: i for i, (p, s) in enumerate(zip(self.paths, self.stamps))
                if p in wanted and i < len(self.frames) and file_stamp(p) == s}  # older indexes: no frames
        todo = [p for p in videos if p not in keep]
        stamps = {p: file_stamp(p) for p in todo}  # before reading: a change during the read shows next time
        errors: list = []
        new_emb, new_frames = model.encode_videos_and_frames(todo, batch_size=batch_size, errors=errors)
        read = ~new_emb.isnan().any(1)  # rows of unreadable files are NaN
        new_paths = [p for p, ok in zip(todo, read.tolist()) if ok]
        kept_paths = list(keep)
        kept = self.embeddings[list(keep.values())] if keep else torch.empty(0, new_emb.shape[1])
        self.embeddings = torch.cat([kept, new_emb[read]])
        self.frames = [self.frames[i] for i in keep.values()] + list(new_frames[read].unbind(0))
        self.times = [self.times[i] for i in keep.values()] + [reader.times(p) for p in new_paths]
        self.stamps = [self.stamps[i] for i in keep.values()] + [stamps[p] for p in new_paths]
        self.paths = kept_paths + new_paths
        self.sampling, self.num_frames = reader.sampling_key, reader.sampler.num_frames
        self._ann_stale = True
        self.errors = errors
        return {"kept": len(kept_paths), "added": len(new_paths), "failed": len(errors), "resampled": int(resampled)}

    def search(self, model: ZeroShotVideoClassifier, query: str, top_k: int = 5) -> list[tuple[str, float]]:
        """The ``top_k`` videos most similar to ``query`` (cosine similarity), best first."""
        self.check(model, top_k)
        if not self.paths:
            return []
        scores, rows = nearest(self.embeddings, model.encode_labels([query])[0], top_k, self.ann)
        return [(self.paths[i], float(s)) for s, i in zip(scores.tolist(), rows.tolist())]

    def moments(self, model: ZeroShotVideoClassifier, query: str,
                top_k: int = 5) -> list[tuple[str, float, float, float]]:
        """Where ``query`` holds: ``(path, start s, end s, score)`` of the best moment of each video, best first."""
        self.check(model, top_k)
        text = model.encode_labels([query])[0]
        found = []
        for path, frames, times in zip(self.paths, self.frames, self.times):
            s = frames.to(text) @ text
            peak = int(s.argmax())
            level = float(s.min() + (s[peak] - s.min()) / 2)
            lo, hi = peak, peak
            while lo > 0 and s[lo - 1] >= level:
                lo -= 1
            while hi < len(s) - 1 and s[hi + 1] >= level:
                hi += 1
            half = (times[1] - times[0]) / 2 if len(times) > 1 else 0.0
            found.append((path, max(0.0, times[lo] - half), times[hi] + half, float(s[peak])))
        return sorted(found, key=lambda m: -m[3])[:top_k]

    def like(self, model: ZeroShotVideoClassifier, video: str, top_k: int = 5, start: float | None = None,
             end: float | None = None) -> list[tuple[str, float]]:
        """The ``top_k`` indexed videos most similar to ``video`` (itself left out), best first; with ``start``
        and/or ``end`` (seconds), to that moment of it: the mean of its frame features in that stretch."""
        self.check(model, top_k)
        resolved = [str(Path(p).resolve()) for p in self.paths]
        mine = str(Path(video).resolve())
        row = resolved.index(mine) if mine in resolved else None
        if start is None and end is None:
            query = self.embeddings[row] if row is not None else model.encode_videos([video])[0]
        else:
            if row is not None:
                frames, times = self.frames[row], self.times[row]
            else:
                frames, times = model.encode_videos_and_frames([video])[1][0], model.reader().times(video)
            inside = [i for i, t in enumerate(times) if (start or 0.0) <= t <= (end if end is not None else t)]
            if not inside:
                raise ValueError(f"{video}: no indexed frame between {start} s and {end} s "
                                 f"(frames at {', '.join(f'{t:.2f}' for t in times[:8])} s ...)")
            query = F.normalize(frames[inside].mean(0), dim=-1)
        scores, rows = nearest(self.embeddings, query.to(self.embeddings), top_k + 1, self.ann)
        found = [(self.paths[i], float(s)) for s, i in zip(scores.tolist(), rows.tolist()) if resolved[i] != mine]
        return found[:top_k]

    def save(self, path: str | Path) -> None:
        """Write the index atomically (a kill leaves the previous index whole)."""
        state = {"backbone": self.backbone, "model_name": self.model_name, "pretrained": self.pretrained,
                 "paths": self.paths, "stamps": self.stamps, "embeddings": self.embeddings,
                 "frames": self.frames, "times": self.times, "sampling": self.sampling,
                 "num_frames": self.num_frames, "ann": None}
        ann_file = Path(str(path) + ".ann")
        if len(self.paths) >= vector_index.ANN_MIN and ann_available():
            if self.ann is None or len(self.ann) != len(self.paths) or self._ann_stale:
                self.ann = ApproximateIndex.build(self.embeddings)
            self.ann.save(ann_file)
            state["ann"] = self._digest()
        else:
            self.ann = None
            ann_file.unlink(missing_ok=True)
        self._ann_stale = False
        atomic_write(path, lambda f: torch.save(state, f))

    def _digest(self) -> str:
        """What the approximate index was built from: the files and their stamps, in order."""
        return hashlib.sha1(json.dumps([self.paths, self.stamps]).encode()).hexdigest()

    @classmethod
    def load(cls, path: str | Path) -> "VideoIndex":
        """Read and check an index: every vector finite and unit length, one per path."""
        try:
            d = torch.load(path, weights_only=True)
            index = cls(d["backbone"], list(d["paths"]), [list(s) for s in d["stamps"]], d["embeddings"],
                        d.get("model_name"), d.get("pretrained"), list(d.get("frames", [])),
                        [list(t) for t in d.get("times", [])], d.get("sampling"), d.get("num_frames"))
        except FileNotFoundError:
            raise IndexFileError(f"index not found: {path} (build it with: python -m zsvc_pl.search index FOLDER "
                              f"--index {path})") from None
        except Exception as e:
            raise IndexFileError(f"{path} is not a readable zsvc_pl index ({type(e).__name__}); index again") from None
        emb = index.embeddings
        if index.paths and (emb.dim() != 2 or len(emb) != len(index.paths) or not torch.isfinite(emb).all()
                            or not torch.allclose(emb.norm(dim=-1), torch.ones(len(emb)), atol=1e-3)):
            raise IndexFileError(f"{path} is damaged (vectors do not match its {len(index.paths)} videos); index again")
        if index.frames and (len(index.frames) != len(index.paths) or len(index.times) != len(index.paths)
                             or not all(torch.isfinite(f).all() and len(f) == len(t)
                                        for f, t in zip(index.frames, index.times))):
            raise IndexFileError(f"{path} is damaged (frame features do not match its videos); index again")
        ann_file = Path(str(path) + ".ann")
        if d.get("ann") and d["ann"] == index._digest() and ann_file.is_file() and ann_available():
            try:
                index.ann = ApproximateIndex.load(ann_file)
            except RuntimeError:  # a damaged .ann: exact search still answers, and the next save rebuilds it
                index._ann_stale = True
        return index


def main(argv: list[str] | None = None) -> int:
    """``index`` a folder or ``query`` an index; returns 0, or exits 2 with one line on a mistake."""
    from zsvc_pl.api import ZeroShotVideoClassifier

    parser = argparse.ArgumentParser(description="index a video folder, then search it with free text")
    parser.add_argument("command", choices=["index", "query", "like"])
    parser.add_argument("target", help="folder to index, the query text, or (like) a video file")
    parser.add_argument("--index", required=True, help="index file")
    parser.add_argument("--model-name", default=None, help="default: the index's backbone, else ViT-B-32")
    parser.add_argument("--pretrained", default=None, help="default: the index's weights, else openai")
    parser.add_argument("--num-frames", type=int, default=None,
                        help="frames per video (default: the index's, else 8); another number re-encodes every video")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--moments", action="store_true", help="query: CSV rows path,start,end,score (seconds)")
    parser.add_argument("--start", type=float, default=None, help="like: the moment of the video from (s)")
    parser.add_argument("--end", type=float, default=None, help="like: the moment of the video to (s)")
    args = parser.parse_args(argv)
    index_file = Path(args.index)
    try:
        index = VideoIndex.load(index_file) if args.command != "index" or index_file.exists() else None
        model_name = args.model_name or (index.model_name if index else None) or "ViT-B-32"
        pretrained = args.pretrained or (index.pretrained if index else None) or "openai"
        num_frames = args.num_frames if args.num_frames is not None else (index.num_frames if index else None)
        kw = {"num_frames": num_frames} if num_frames is not None else {}
        clf = ZeroShotVideoClassifier(model_name=model_name, pretrained=pretrained,
                                      feature_cache=index_file.with_name(index_file.name + ".features"), **kw)
        if args.command == "query" and args.moments:
            if len(index.frames) != len(index.paths):
                raise IndexFileError(f"{index_file} holds no frame features (made by an older version): index again")
            writer = csv.writer(sys.stdout)  # CSV quoting keeps a newline in a name inside its row
            writer.writerow(["path", "start", "end", "score"])
            for path, start, end, score in index.moments(clf, args.target, args.top_k):
                writer.writerow([path, f"{start:.2f}", f"{end:.2f}", f"{score:.4f}"])
            return 0
        if args.command in ("query", "like"):
            found = (index.search(clf, args.target, args.top_k) if args.command == "query"
                     else index.like(clf, args.target, args.top_k, args.start, args.end))
            for rank, (path, score) in enumerate(found, 1):
                print(f"{rank}. {score:.3f}  {printable(path)}")
            return 0
        videos = list_videos(args.target)
        if not videos:
            raise ValueError(f"no video files under {args.target}: nothing to index")
        index = index or VideoIndex(clf.backbone_identity, model_name=model_name, pretrained=pretrained)
        unreadable = unreadable_file(index_file)
        check_writable(index_file)  # a read-only or full disk: said before encoding, not after
        with output_lock(index_file):
            counts = index.update(clf, videos)
            if index.errors:
                atomic_write_text(unreadable, csv_text(["path", "reason"], index.errors))
            else:
                unreadable.unlink(missing_ok=True)
            index.save(index_file)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        parser.exit(2, f"zsvc_pl.search: error: {str(e).splitlines()[0]}\n")
    for path, reason in index.errors:
        print(f"skipped {printable(path)}: {reason}", file=sys.stderr)
    again = "; every video encoded again: the index was read with another sampling" if counts["resampled"] else ""
    listed = f", listed with their reasons in {unreadable}" if index.errors else ""
    print(f"indexed {len(index.paths)} videos ({counts['added']} encoded, {counts['kept']} unchanged, "
          f"{counts['failed']} unreadable{listed}{again}) -> {index_file}")
    if not index.paths:
        parser.exit(2, f"zsvc_pl.search: error: no video under {args.target} could be read\n")
    return 0


def unreadable_file(index_file: Path) -> Path:
    """Where the files an ``index`` run could not read are listed: ``videos.idx`` -> ``videos.idx.unreadable.csv``."""
    return index_file.with_name(index_file.name + ".unreadable.csv")


if __name__ == "__main__":
    sys.exit(main())
