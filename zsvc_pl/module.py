"""ZeroShotVideoClassifier: frozen CLIP + prompts + temporal aggregation, as a LightningModule.

video uint8 -> CLIP normalisation -> image features (L2) -> temporal aggregation -> cosine similarity
with cached label features x logit scale -> softmax, averaged over views.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from lightning import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics.aggregation import SumMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from zsvc_pl.backbone import load_clip, quantize_image_tower
from zsvc_pl.cache import FeatureCache
from zsvc_pl.data.datasets import VideoClassificationDataset, VideoRecord, collate_videos
from zsvc_pl.data.sampling import FrameSampler
from zsvc_pl.data.transforms import ClipNormalize
from zsvc_pl.metrics import BaseNovelAccuracy, classification_metrics
from zsvc_pl.prompts import class_prompts, load_descriptions, load_templates, validate_labels
from zsvc_pl.temporal import TemporalTransformer, build_temporal
from zsvc_pl.text import PromptLearner, encode_prompts

log = logging.getLogger(__name__)
# By design: checkpoints hold no backbone weights, and the frozen backbone stays in eval mode.
warnings.filterwarnings("ignore", message=r"Found keys that are in the model state dict but not in the checkpoint: "
                                          r"\['backbone")
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


class BackboneMismatchError(RuntimeError):
    """A checkpoint was trained on another backbone than the one configured."""


class ZeroShotVideoClassifier(LightningModule):
    """Classify videos against any label list with a frozen CLIP model; optional learnable parts.

    With ``n_ctx=0``, no ``ctx_init`` and ``temporal`` in (mean, text_attention) nothing is trainable:
    this is the zero-shot path. ``temporal="transformer"`` and/or CoOp context vectors make it trainable
    on base classes; ``text_reg_weight`` and ``zs_mix`` keep novel classes close to zero-shot.

    Args:
        model_name: open_clip architecture, ``hf-hub:`` id, config JSON path, or ``demo``.
        pretrained: open_clip tag, checkpoint file, ``demo``, or ``None``/``none`` for random weights.
        class_names: the classes of the dataset (label ids index into it).
        templates: built-in template set name, template file, single template, or list of templates.
        descriptions: YAML/JSON mapping class name -> descriptions/synonyms.
        descriptions_mode: ``add`` descriptions to the class name or ``replace`` it.
        num_frames: frames per video for the Python API (``classify``, ``encode_videos``).
        sampling: how the Python API picks frames: ``uniform`` (segment centres) or ``adaptive`` (where the
            content changes, from a low-resolution probe pass).
        temporal: ``mean``, ``text_attention`` (parameter-free) or ``transformer`` (learnable).
        temporal_depth, temporal_heads, max_frames: transformer settings.
        attention_temperature: softmax temperature of ``text_attention``.
        n_ctx: CoOp context vectors (0 = off); ``ctx_init`` initialises them from a phrase.
        class_specific_ctx: one context per class instead of a shared one.
        class_position: where the class words go in the learned prompt: end, middle or front.
        text_reg_weight: weight of the KgCoOp loss ``1 - cos(learned, hand-made)`` on text features (CoOp only).
        zs_mix: at evaluation, logits = (1 - zs_mix) * learned + zs_mix * zero-shot (mean pooling, fixed prompts);
            only when the module has learnable parts. Both defaults are the base-to-novel settings that kept
            novel accuracy on the demo world (README); set them to 0 to turn them off.
        base_classes: indices of the base classes; training sees only these, evaluation reports base/novel/HM.
        lr, weight_decay: AdamW settings for the trainable parameters.
        top_k: labels written per video by ``predict``.
        cache_dir: where open_clip looks for and stores downloaded weights.
        feature_cache: folder for per-video frame features used by ``classify``/``encode_videos``: the second
            pass over the same files skips decoding and the image tower.
        quantize: int8 dynamic quantisation of the image tower's linear layers, for CPU inference
            (``benchmarks/quantization.py`` measures its speed and agreement with fp32).
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = "openai",
        class_names: list[str] | None = None,
        templates: str | list[str] = "video",
        descriptions: str | None = None,
        descriptions_mode: str = "add",
        num_frames: int = 8,
        sampling: str = "uniform",
        temporal: str = "mean",
        temporal_depth: int = 1,
        temporal_heads: int = 4,
        max_frames: int = 32,
        attention_temperature: float = 0.05,
        n_ctx: int = 0,
        ctx_init: str | None = None,
        class_specific_ctx: bool = False,
        class_position: str = "end",
        text_reg_weight: float = 8.0,
        zs_mix: float = 0.2,
        base_classes: list[int] | None = None,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        top_k: int = 5,
        cache_dir: str | None = None,
        feature_cache: str | None = None,
        quantize: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        bb = load_clip(model_name, pretrained, cache_dir)
        if quantize:
            quantize_image_tower(bb.model)
        self.backbone = bb.model
        self.tokenizer = bb.tokenizer
        self.backbone_identity = bb.identity
        self.image_size = bb.image_size
        self.normalize = ClipNormalize(bb.image_size, bb.mean, bb.std, bb.interpolation)
        if sampling not in ("uniform", "adaptive"):
            raise ValueError(f"sampling must be 'uniform' or 'adaptive', got {sampling!r}")
        self.class_names = validate_labels(class_names) if class_names else None
        self.base_classes = list(base_classes) if base_classes is not None else None
        self.templates = load_templates(templates)
        self.descriptions = load_descriptions(descriptions) if descriptions else None
        self.temporal = build_temporal(temporal, bb.embed_dim, temporal_depth, temporal_heads, max_frames,
                                       attention_temperature)
        self.prompt_learner = None
        if n_ctx > 0 or ctx_init:
            self.prompt_learner = PromptLearner(self.backbone, self.tokenizer, n_ctx, ctx_init, self.class_names,
                                                class_specific_ctx, class_position)
        self._text_cache: dict[tuple, torch.Tensor] = {}
        self.strict_loading = False  # checkpoints hold no backbone weights
        self.decode_errors: list[tuple[str, str]] = []
        self.feature_cache = FeatureCache(feature_cache) if feature_cache else None

    # --- mode and checkpoints ------------------------------------------------------------------
    @property
    def learnable(self) -> bool:
        """True when the module has trainable parts (CoOp context vectors or the temporal transformer)."""
        return self.prompt_learner is not None or isinstance(self.temporal, TemporalTransformer)

    def train(self, mode: bool = True) -> "ZeroShotVideoClassifier":
        """Keep the frozen backbone in eval mode whatever Lightning asks of the module."""
        super().train(mode)
        self.backbone.eval()
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("backbone.")}
        checkpoint["backbone_identity"] = self.backbone_identity

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("backbone_identity")
        if saved is not None and saved != self.backbone_identity:
            raise BackboneMismatchError(
                f"this checkpoint was trained on backbone '{saved}', but the model is configured with "
                f"'{self.backbone_identity}'. Set model_name/pretrained to the checkpoint's backbone."
            )
        self._text_cache.clear()

    # --- features ---------------------------------------------------------------------------------
    @property
    def logit_scale(self) -> torch.Tensor:
        return self.backbone.logit_scale.exp().clamp(max=100.0)

    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, V, T, 3, S, S]`` -> L2-normalised image features ``[B, V, T, D]`` (no gradient)."""
        b, v, t = video.shape[:3]
        with torch.no_grad():
            x = self.normalize(video.flatten(0, 2))
            feats = self.backbone.encode_image(x)
        return F.normalize(feats.float(), dim=-1).view(b, v, t, -1)

    def batch_features(self, batch: dict) -> torch.Tensor:
        """Frame features ``[B, V, T, D]`` of a collated batch: encoded for decoded videos (and stored when the
        data module's feature cache is on), read for videos the cache already held."""
        n = len(batch["path"])
        parts = {}
        if batch["video"].numel():
            feats = self.frame_features(batch["video"].to(self.device))
            parts.update(zip(batch["video_pos"], feats))
            if self.feature_cache is not None and "cache_keys" in batch:
                for pos, f in zip(batch["video_pos"], feats):
                    self.feature_cache.put(batch["cache_keys"][pos], f)
        if "features" in batch:
            parts.update(zip(batch["features_pos"], batch["features"].to(self.device, torch.float32)))
        return torch.stack([parts[i] for i in range(n)])

    def zeroshot_text_features(self, labels: Sequence[str]) -> torch.Tensor:
        """Hand-made prompt-ensemble features ``[C, D]``, computed once per label set and cached."""
        key = (self.backbone_identity, tuple(labels), tuple(self.templates), str(self.device),
               self.hparams.descriptions, self.hparams.descriptions_mode)
        if key not in self._text_cache:
            prompts = class_prompts(list(labels), self.templates, self.descriptions, self.hparams.descriptions_mode)
            self._text_cache[key] = encode_prompts(self.backbone, self.tokenizer, prompts)
        return self._text_cache[key]

    def text_features(self, labels: Sequence[str]) -> torch.Tensor:
        """Class features ``[C, D]``: learned prompts when CoOp is on, else the cached hand-made ones."""
        if self.prompt_learner is None:
            return self.zeroshot_text_features(labels)
        if self.training:
            return self.prompt_learner(list(labels))
        key = ("learned", tuple(labels), str(self.device), self.global_step)
        if key not in self._text_cache:
            for stale in [k for k in self._text_cache if k[0] == "learned" and k[3] != self.global_step]:
                del self._text_cache[stale]  # features of earlier steps are never used again
            with torch.no_grad():
                self._text_cache[key] = self.prompt_learner(list(labels))
        return self._text_cache[key]

    def video_logits(self, frames: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Frame features ``[B, V, T, D]`` and class features ``[C, D]`` -> logits ``[B, V, C]``."""
        b, v = frames.shape[:2]
        video = F.normalize(self.temporal(frames.flatten(0, 1), text), dim=-1)
        if video.dim() == 3:  # per-class video features [BV, C, D]
            sim = (video * text.unsqueeze(0)).sum(-1)
        else:
            sim = video @ text.T
        return (self.logit_scale * sim).view(b, v, -1)

    def eval_logits(self, frames: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
        """Logits ``[B, V, C]`` used for evaluation and prediction (with the zero-shot mix when set)."""
        logits = self.video_logits(frames, self.text_features(labels))
        mix = self.hparams.zs_mix
        if mix > 0 and self.learnable:
            zs_video = F.normalize(frames.mean(dim=2), dim=-1)
            zs = self.logit_scale * zs_video @ self.zeroshot_text_features(labels).T
            logits = (1 - mix) * logits + mix * zs
        return logits

    def forward(self, video: torch.Tensor, labels: Sequence[str] | None = None) -> torch.Tensor:
        """uint8 video ``[B, V, T, 3, S, S]`` -> class probabilities ``[B, C]`` (softmax averaged over views)."""
        labels = labels or self._require_labels()
        return self.eval_logits(self.frame_features(video), labels).softmax(-1).mean(1)

    def _require_labels(self) -> list[str]:
        if not self.class_names:
            raise ValueError("no class names: pass labels, set model.class_names, or give the data module a dataset")
        return self.class_names

    # --- Lightning hooks ----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if not self.class_names and dm is not None and getattr(dm, "class_names", None):
            self.class_names = validate_labels(dm.class_names)
        if self.base_classes is None and dm is not None and getattr(dm, "base_classes", None) is not None:
            self.base_classes = dm.base_classes
        if dm is not None and hasattr(dm, "attach_feature_cache"):
            self.feature_cache = dm.attach_feature_cache(self.backbone_identity) or self.feature_cache
        names = self._require_labels()
        self.metrics = torch.nn.ModuleDict({
            "val": classification_metrics(len(names), "val/"),
            "test": classification_metrics(len(names), "test/"),
        })
        self.counts = torch.nn.ModuleDict({s: SumMetric() for s in ("val", "test")})
        self.confusion = torch.nn.ModuleDict({s: MulticlassConfusionMatrix(len(names)) for s in ("val", "test")})
        self.last_results: dict[str, dict] = {}
        self.base_novel = torch.nn.ModuleDict({
            s: BaseNovelAccuracy(len(names), self.base_classes) for s in ("val", "test")
        }) if self.base_classes is not None else None
        if stage == "fit" and not self.learnable:
            raise ValueError("nothing to train: set model.temporal=transformer and/or model.n_ctx>0 "
                             "(zero-shot evaluation needs no fit: use `test`)")

    def _base_names(self) -> tuple[list[str], torch.Tensor | None]:
        names = self._require_labels()
        if self.base_classes is None:
            return names, None
        remap = torch.full((len(names),), -1, dtype=torch.long)
        remap[torch.tensor(self.base_classes)] = torch.arange(len(self.base_classes))
        return [names[i] for i in self.base_classes], remap

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        self._collect_errors(batch)
        if batch["video"].numel() == 0:
            return None
        names, remap = self._base_names()
        target = batch["label"] if remap is None else remap.to(self.device)[batch["label"]]
        text = self.text_features(names)
        logits = self.video_logits(self.frame_features(batch["video"]), text)[:, 0]
        loss = F.cross_entropy(logits, target)
        self.log("train/ce", loss, prog_bar=True, batch_size=len(target))
        if self.prompt_learner is not None and self.hparams.text_reg_weight > 0:
            reg = (1 - (text * self.zeroshot_text_features(names)).sum(-1)).mean()
            loss = loss + self.hparams.text_reg_weight * reg
            self.log("train/text_reg", reg, batch_size=len(target))
        self.log("train/acc", (logits.argmax(-1) == target).float().mean(), prog_bar=True, batch_size=len(target))
        return loss

    def _eval_step(self, batch: dict, stage: str) -> None:
        self._collect_errors(batch)
        if not batch["path"]:
            return
        logits = self.eval_logits(self.batch_features(batch), self._require_labels())
        probs = logits.softmax(-1).mean(1)
        self.metrics[stage].update(probs, batch["label"])
        self.counts[stage].update(len(batch["label"]))
        self.confusion[stage].update(probs, batch["label"])
        if self.base_novel is not None:
            self.base_novel[stage].update(logits.mean(1), batch["label"])

    def _eval_epoch_end(self, stage: str) -> None:
        results = {k: float(v) for k, v in self.metrics[stage].compute().items()}
        results[f"{stage}/videos"] = float(self.counts[stage].compute())
        if self.base_novel is not None:
            results.update({f"{stage}/{k}": float(v) for k, v in self.base_novel[stage].compute().items()})
            self.base_novel[stage].reset()
        self.log_dict(results)
        self.last_results[stage] = {"metrics": results, "confusion": self.confusion[stage].compute().cpu()}
        for m in (self.metrics[stage], self.counts[stage], self.confusion[stage]):
            m.reset()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        self._collect_errors(batch)
        if not batch["path"]:
            return []
        names = self._require_labels()
        probs = self.eval_logits(self.batch_features(batch), names).softmax(-1).mean(1)
        k = min(self.hparams.top_k, len(names))
        scores, idx = probs.topk(k, dim=-1)
        return [{"path": p, "labels": [names[j] for j in i.tolist()], "scores": s.tolist()}
                for p, i, s in zip(batch["path"], idx.cpu(), scores.cpu())]

    def _collect_errors(self, batch: dict) -> None:
        for path, reason in batch.get("errors", []):
            log.warning("skipped %s: %s", path, reason)
            self.decode_errors.append((path, reason))

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        total = sum(p.numel() for p in self.parameters())
        rank_zero_info(f"zsvc_pl: {sum(p.numel() for p in params):,} trainable parameters out of {total:,}")
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        if isinstance(self.temporal, TemporalTransformer):
            no_decay.append(decay.pop(next(i for i, p in enumerate(decay) if p is self.temporal.pos)))
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.hparams.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = max(1, total // 10)

        def warmup_cosine(step: int) -> float:
            return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --- Python API ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def _video_frames(self, paths: Sequence[str], batch_size: int, num_clips: int, num_crops: int):
        """Frame features ``[b, V, T, D]`` batch by batch, through the same dataset, collate and feature cache
        as ``test``/``predict``; a bad file raises ``VideoDecodeError``."""
        adaptive = self.hparams.sampling == "adaptive"
        sampler = FrameSampler(self.hparams.num_frames, 1 if adaptive else num_clips, adaptive=adaptive)
        ds = VideoClassificationDataset([VideoRecord(str(p)) for p in paths], sampler, self.image_size,
                                        num_crops, on_error="raise")
        if self.feature_cache is not None:
            ds.attach_cache(self.feature_cache, self.backbone_identity)
        for start in range(0, len(ds), batch_size):
            yield self.batch_features(collate_videos([ds[i] for i in range(start, min(start + batch_size, len(ds)))]))

    @torch.inference_mode()
    def encode_labels(self, labels: Sequence[str]) -> torch.Tensor:
        """L2-normalised label features ``[C, D]`` (learned prompts when trained, else hand-made)."""
        was = self.training
        self.eval()
        try:
            return self.text_features(validate_labels(list(labels))).clone()
        finally:
            self.train(was)

    @torch.inference_mode()
    def encode_videos(self, paths: Sequence[str | Path], batch_size: int = 8, num_clips: int = 1,
                      num_crops: int = 1) -> torch.Tensor:
        """L2-normalised video embeddings ``[N, D]`` (views averaged). Raises ``VideoDecodeError`` on a bad file."""
        self.eval()
        out = []
        for frames in self._video_frames([str(p) for p in paths], batch_size, num_clips, num_crops):
            b, v = frames.shape[:2]
            agg = self.temporal(frames.flatten(0, 1), None)
            out.append(F.normalize(F.normalize(agg, dim=-1).view(b, v, -1).mean(1), dim=-1))
        return torch.cat(out)

    @torch.inference_mode()
    def classify(self, videos: str | Path | Sequence[str | Path], labels: Sequence[str], top_k: int | None = None,
                 batch_size: int = 8, num_clips: int = 1, num_crops: int = 1):
        """Classify one video (-> ``[(label, prob), ...]``) or a list (-> a list of such lists), best first."""
        single = isinstance(videos, (str, Path))
        paths = [str(videos)] if single else [str(v) for v in videos]
        labels = validate_labels(list(labels))
        self.eval()
        k = min(top_k or len(labels), len(labels))
        results = []
        for frames in self._video_frames(paths, batch_size, num_clips, num_crops):
            probs = self.eval_logits(frames, labels).softmax(-1).mean(1)
            scores, idx = probs.topk(k, dim=-1)
            results += [[(labels[j], float(s)) for j, s in zip(i.tolist(), sc.tolist())]
                        for i, sc in zip(idx.cpu(), scores.cpu())]
        return results[0] if single else results


    @torch.inference_mode()
    def explain(self, video: str | Path, labels: Sequence[str], num_frames: int = 16, top_k: int = 3,
                save_to: str | Path | None = None):
        """Per-frame label scores of one video and a picture of them (frames strip + scores over time).

        Returns ``(timeline, figure)``; ``timeline.span(label, threshold)`` says when a label holds.
        """
        from zsvc_pl.plots import explain_figure, save
        from zsvc_pl.timeline import video_timeline

        self.eval()
        tl = video_timeline(self, video, validate_labels(list(labels)), num_frames)
        fig = explain_figure(tl, top_k=top_k)
        if save_to:
            save(fig, save_to)
        return tl, fig


__all__ = ["ZeroShotVideoClassifier", "BackboneMismatchError"]
