"""The Python API: ``ZeroShotVideoClassifier`` classifies and embeds video files in a notebook, in three lines.

It owns what a notebook should not have to: reading files (the same dataset, frame reader and DataLoader
workers as the CLI, so decoding overlaps the image tower), the feature cache and the device. The tensors-only
model is ``self.model`` (a ``VideoTextModel``); the LightningModule for training is
``zsvc_pl.train.VideoClassificationTask``, whose checkpoints load here with ``from_checkpoint``.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from zsvc_pl.data import (
    DEFAULT_NUM_FRAMES,
    FrameReader,
    FrameSampler,
    VideoClassificationDataset,
    VideoDecodeError,
    VideoRecord,
    collate_videos,
)
from zsvc_pl.data.cache import FeatureCache
from zsvc_pl.data.label_sets import LabelsLike, LabelSet, read_label_set
from zsvc_pl.labels import validate_labels
from zsvc_pl.model.abstention import NONE_LABEL, fit_threshold, open_set_score
from zsvc_pl.model.examples import DEFAULT_WEIGHT, ExampleMemory, check_example_weight
from zsvc_pl.model.video_text import VideoTextModel, create_model
from zsvc_pl.timeline import Timeline, explain_figure, video_timeline
from zsvc_pl.train.features import batch_features

Result = list[tuple[str, float]]
log = logging.getLogger(__name__)


class ZeroShotVideoClassifier:
    """Classify videos against any label list with a frozen CLIP model.

    Args:
        model_name, pretrained: the backbone (open_clip name, ``hf-hub:`` id, config JSON or ``demo``; tag, file,
            ``demo`` or ``none``).
        templates, descriptions, descriptions_mode, temporal: how labels become text and frames become a video
            (see ``zsvc_pl.model.create_model``).
        num_frames: frames per video; ``sampling``: ``uniform`` or ``adaptive`` (where the picture changes).
        frame_size: side of the decoded square frames (default: the backbone's input size).
        num_workers: DataLoader worker processes that decode while the model encodes (0: in this process).
        backend, decode_timeout: first decoder to try, and the per-video time limit in seconds.
        seek: ``exact`` or ``keyframe`` (each sampled frame moved to the nearest keyframe in its segment, which
            decodes alone: faster, approximate; see ``zsvc_pl.data.reader.FrameReader``).
        feature_cache: folder for per-video frame features: classifying the same files again (with new labels)
            skips decoding and the image tower.
        quantize: int8 image tower on CPU (faster only with ``compile_tower``: ``torch.compile`` of the image tower,
            a one-off compile; see README Speed); token_merging: tokens merged per image-tower block (ToMe, 0: off);
            cache_dir: open_clip's weight cache; device: default cuda if present.
        tower: ``fp32``, ``compiled``, ``int8``, ``int8-compiled`` or ``auto``: the quickest of them within cosine
            0.999 of fp32 on this machine (measured on first use, then kept per machine and backbone).
        model: an existing ``VideoTextModel`` to wrap instead of building one (see ``from_checkpoint``).
        labels: labels used when ``classify`` is called without any (a trained run's classes).
        example_weight: how much labels' example clips count against their words (``zsvc_pl.model.examples``).
    """

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str | None = "openai",
                 templates: str | list[str] = "video",
                 descriptions: str | None = None, descriptions_mode: str = "add", temporal: str = "mean",
                 num_frames: int = DEFAULT_NUM_FRAMES, sampling: str = "uniform", frame_size: int | None = None,
                 num_workers: int = 2, backend: str = "auto", decode_timeout: float | None = 60.0, seek: str = "exact",
                 feature_cache: str | Path | None = None, quantize: bool = False, token_merging: int = 0,
                 compile_tower: bool = False, tower: str = "fp32",
                 cache_dir: str | None = None, device: str | torch.device | None = None,
                 model: VideoTextModel | None = None, labels: Sequence[str] | None = None,
                 example_weight: float = DEFAULT_WEIGHT) -> None:
        if sampling not in ("uniform", "adaptive"):
            raise ValueError(f"sampling must be 'uniform' or 'adaptive', got {sampling!r}")
        FrameSampler(num_frames)  # refuses a frame count below 1 now, not as an error on every video
        if frame_size is not None and frame_size < 1:
            raise ValueError(f"frame_size must be at least 1 (or None: the model's size), got {frame_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be 0 (decode in this process) or more, got {num_workers}")
        if model is None:
            model = create_model(model_name, pretrained, templates, descriptions, descriptions_mode, temporal,
                                 cache_dir=cache_dir, quantize=quantize, token_merging=token_merging,
                                 compile_tower=compile_tower, tower=tower)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(device).eval()
        self.num_frames = num_frames
        self.sampling = sampling
        self.frame_size = frame_size or model.image_size
        self.num_workers = num_workers
        self.backend = backend
        self.decode_timeout = decode_timeout
        self.seek = seek
        self.reader()  # refuses an unknown seek now, not as an error on every video
        self.labels = validate_labels(list(labels)) if labels else None
        self.example_weight = check_example_weight(example_weight)
        self._examples: dict[tuple, ExampleMemory] = {}
        self.feature_cache = (FeatureCache(feature_cache).bind(model.feature_identity, model.embed_dim)
                              if feature_cache else None)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> "ZeroShotVideoClassifier":
        """A trained run's model (``last.ckpt`` of ``fit``), its class names as default labels."""
        from zsvc_pl.train.checkpoints import BackboneMismatchError, CheckpointError, read_checkpoint
        from zsvc_pl.train.task import VideoClassificationTask

        read_checkpoint(path)  # a damaged or foreign file: one error naming it
        try:
            task = VideoClassificationTask.load_from_checkpoint(path, map_location="cpu", weights_only=True)
        except (CheckpointError, BackboneMismatchError) as e:
            raise type(e)(f"{path}: {e}") from None
        except (TypeError, ValueError, KeyError, RuntimeError) as e:  # settings no model can be built from
            raise CheckpointError(f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        kwargs.setdefault("labels", task.class_names)
        return cls(model=task.model, **kwargs)

    @property
    def backbone_identity(self) -> str:
        return self.model.identity

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    # --- reading videos ----------------------------------------------------------------------------
    def reader(self, num_frames: int | None = None, num_clips: int = 1, num_crops: int = 1) -> FrameReader:
        """The frame reader this classifier uses (same settings as the CLI's data module)."""
        adaptive = self.sampling == "adaptive"
        sampler = FrameSampler(self.num_frames if num_frames is None else num_frames, 1 if adaptive else num_clips,
                               adaptive=adaptive)
        return FrameReader(sampler, self.frame_size, num_crops, self.backend, self.decode_timeout, self.seek)

    def _all_cached(self, paths: Sequence[str], reader: FrameReader) -> bool:
        """True when the feature cache holds an entry for every file (missing files count as not cached)."""
        if self.feature_cache is None:
            return False
        try:
            return all(self.feature_cache.key(p, reader.sampling_key) in self.feature_cache for p in paths)
        except OSError:
            return False

    @torch.inference_mode()
    def _frame_batches(self, paths: Sequence[str], batch_size: int, num_clips: int, num_crops: int,
                       errors: list | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Positions in ``paths`` ``[b]`` and their frame features ``[b, V, T, D]``, batch by batch, in order;
        decoding runs in worker processes. A file that cannot be read raises ``VideoDecodeError`` naming it, or
        with ``errors`` given is left out and listed there as ``(path, reason)``."""
        ds = VideoClassificationDataset([VideoRecord(str(p)) for p in paths],
                                        self.reader(None, num_clips, num_crops), "skip", self.feature_cache)
        workers = min(self.num_workers, len(ds) // max(batch_size, 1) + 1) if len(ds) > 1 else 0
        if workers and self._all_cached(paths, ds.reader):  # nothing to decode: starting workers costs more
            workers = 0
        # fork where there is one: a worker started by spawn or forkserver imports torch again (seconds per call)
        context = ("fork" if "fork" in mp.get_all_start_methods() else None) if workers else None
        loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_videos,
                            pin_memory=self.device.type == "cuda", multiprocessing_context=context)
        for batch in loader:
            if batch["errors"] and errors is None:
                raise VideoDecodeError(*batch["errors"][0])
            if errors is not None:
                errors += batch["errors"]
            if batch["path"]:
                yield batch["index"], batch_features(self.model, batch, self.feature_cache)

    # --- the API ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_labels(self, labels: Sequence[str]) -> torch.Tensor:
        """L2-normalised label features ``[C, D]`` (learned prompts when trained, else hand-made)."""
        return self.model.text_features(validate_labels(list(labels))).clone()

    @torch.inference_mode()
    def encode_videos(self, paths: Sequence[str | Path], batch_size: int = 8, num_clips: int = 1,
                      num_crops: int = 1, errors: list | None = None) -> torch.Tensor:
        """L2-normalised video embeddings ``[N, D]`` (views averaged), one row per path given. Raises
        ``VideoDecodeError`` on a bad file, unless a list is passed as ``errors``: a bad file's row is then NaN
        (``emb.isnan().any(1)`` finds them) and it is appended there as (path, reason)."""
        return self.encode_videos_and_frames(paths, batch_size, num_clips, num_crops, errors)[0]

    @torch.inference_mode()
    def encode_videos_and_frames(self, paths: Sequence[str | Path], batch_size: int = 8, num_clips: int = 1,
                                 num_crops: int = 1, errors: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Video embeddings ``[N, D]`` and their frames' L2-normalised image features ``[N, T, D]`` (views
        averaged), from one decode (or the feature cache); bad files as in ``encode_videos``."""
        videos = torch.full((len(paths), self.model.embed_dim), float("nan"))
        frames = torch.full((len(paths), self.num_frames, self.model.embed_dim), float("nan"))
        for rows, v, f in self.encode_batches(paths, batch_size, num_clips, num_crops, errors):
            videos[rows], frames[rows] = v, f
        return videos, frames

    @torch.inference_mode()
    def encode_batches(self, paths: Sequence[str | Path], batch_size: int = 8, num_clips: int = 1,
                       num_crops: int = 1, errors: list | None = None
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``encode_videos_and_frames`` batch by batch, for callers that store results as they come: positions
        in ``paths`` ``[b]``, video embeddings ``[b, D]`` and frame features ``[b, T, D]``."""
        for rows, f in self._frame_batches([str(p) for p in paths], batch_size, num_clips, num_crops, errors):
            yield rows, self.model.video_features(f).float().cpu(), F.normalize(f.mean(1), dim=-1).float().cpu()

    def label_set(self, labels: LabelsLike | str | Path | None = None) -> tuple[LabelSet, ExampleMemory | None]:
        """Labels (names, ``{name: [texts and/or clip paths]}``, a YAML file or a folder of example clips per
        label) and the memory of their example clips' embeddings, encoded once per set of unchanged files."""
        if labels is None and self.labels is None:
            raise ValueError("no labels: pass labels=[...] (or load a trained run with from_checkpoint)")
        label_set = read_label_set(labels if labels is not None else self.labels)
        if not label_set.has_examples:
            return label_set, None
        clips, owner = label_set.example_clips()
        key = (tuple(label_set.names), tuple(clips), tuple(os.stat(c).st_mtime_ns for c in clips))
        if key not in self._examples:
            self._examples = {key: ExampleMemory(self.encode_videos(clips), owner, len(label_set.names))}
        self._examples[key].weight = self.example_weight
        return label_set, self._examples[key]

    @torch.inference_mode()
    def scores(self, videos: Sequence[str | Path], labels: LabelsLike | str | Path | None = None,
               batch_size: int = 8, num_clips: int = 1, num_crops: int = 1,
               errors: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per video and label ``[N, C]``: probabilities (softmax over the labels, averaged over views) and
        similarities (the logits over the logit scale: cosine with the label's text, plus the example term).
        Bad files as in ``encode_videos``: they raise, or with ``errors`` given their rows are NaN."""
        label_set, examples = self.label_set(labels)
        probs = torch.full((len(videos), len(label_set.names)), float("nan"))
        sims = probs.clone()
        for rows, frames in self._frame_batches([str(v) for v in videos], batch_size, num_clips, num_crops, errors):
            logits = self.model.eval_logits(frames, label_set.prompts, examples).float()
            probs[rows] = logits.softmax(-1).mean(1).cpu()
            sims[rows] = (logits.mean(1) / self.model.logit_scale).cpu()
        return probs, sims

    def probabilities(self, videos: Sequence[str | Path], labels: LabelsLike | str | Path | None = None,
                      **kwargs) -> torch.Tensor:
        """Label probabilities ``[N, C]`` of each video (softmax over the labels, averaged over views)."""
        return self.scores(videos, labels, **kwargs)[0]

    @torch.inference_mode()
    def classify(self, videos: str | Path | Sequence[str | Path], labels: LabelsLike | str | Path | None = None,
                 top_k: int | None = None, batch_size: int = 8, num_clips: int = 1,
                 num_crops: int = 1, abstain: float | None = None,
                 errors: list | None = None) -> Result | list[Result | None]:
        """Classify one video (-> ``[(label, prob), ...]``) or a list (-> a list of such lists), best first.

        ``labels``: names, or labels by example (see ``label_set``). ``abstain``: an open-set threshold (from
        ``fit_abstention``); a video whose best similarity is below it gets ``("none", similarity)`` first.
        One video that cannot be read raises ``VideoDecodeError``; in a list, its result is ``None`` (the others
        keep theirs, in the order given), it is logged, and it is appended to ``errors`` as (path, reason).
        """
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1 (or None: every label), got {top_k}")
        single = isinstance(videos, (str, Path))
        paths = [str(videos)] if single else [str(v) for v in videos]
        label_set = self.label_set(labels)[0]  # read once; scores() takes the LabelSet as it is
        names = label_set.names
        skipped: list[tuple[str, str]] = []
        probs, sims = self.scores(paths, label_set, batch_size, num_clips, num_crops, None if single else skipped)
        for path, reason in skipped:
            log.warning("skipped %s: %s", path, reason)
        if errors is not None:
            errors += skipped
        scores, idx = probs.topk(min(top_k or len(names), len(names)), dim=-1)  # None: every label
        results: list[Result | None] = []
        for i, sc, best in zip(idx.tolist(), scores.tolist(), open_set_score(sims).tolist()):
            ranked = [(names[j], float(s)) for j, s in zip(i, sc)]
            if best != best:  # NaN: the video could not be read
                results.append(None)
                continue
            results.append([(NONE_LABEL, best)] + ranked if abstain is not None and best < abstain else ranked)
        return results[0] if single else results

    def fit_abstention(self, videos: Sequence[str | Path], labels: LabelsLike | str | Path | None = None,
                       recall: float = 0.95, **kwargs) -> float:
        """The open-set threshold that keeps ``recall`` of ``videos``, labelled videos whose labels are all in
        ``labels``; pass it to ``classify(..., abstain=...)`` so that videos outside the list get ``none``."""
        return fit_threshold(open_set_score(self.scores(videos, labels, **kwargs)[1]), recall)

    @torch.inference_mode()
    def timeline(self, video: str | Path, labels: Sequence[str], num_frames: int | None = None) -> Timeline:
        """Per-frame label scores of one video over time (``timeline.span(label, threshold)``: when it holds)."""
        return video_timeline(self.model, self.reader(num_frames), video, validate_labels(list(labels)))

    def explain(self, video: str | Path, labels: Sequence[str], num_frames: int | None = None, top_k: int = 3,
                save_to: str | Path | None = None):
        """Per-frame label scores of one video and a picture of them (frames strip + scores over time).

        Returns ``(timeline, figure)``; ``timeline.span(label, threshold)`` says when a label holds.
        """
        tl = self.timeline(video, labels, num_frames)
        fig = explain_figure(tl, top_k=top_k)
        if save_to:
            from zsvc_pl.train.figures import save  # Lightning and matplotlib: imported when a picture is saved

            save(fig, save_to)
        return tl, fig
