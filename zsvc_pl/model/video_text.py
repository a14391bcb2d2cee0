"""VideoTextModel: a frozen CLIP, its label features and a temporal aggregator, as a plain ``nn.Module``.

uint8 frames -> CLIP normalisation -> image features (L2) -> temporal aggregation -> cosine similarity with
cached label features x logit scale. Tensors in, tensors out: no Lightning, no files.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zsvc_pl.model.backbone import Backbone, load_clip, state_digest
from zsvc_pl.model.examples import ExampleMemory
from zsvc_pl.model.image_tower import FrameEncoder, quantize_image_tower
from zsvc_pl.model.preprocess import ClipNormalize
from zsvc_pl.labels import validate_labels
from zsvc_pl.model.prompts import class_prompts, load_descriptions, load_templates
from zsvc_pl.model.temporal import TemporalTransformer, build_temporal
from zsvc_pl.model.text import PromptLearner, encode_prompts
from zsvc_pl.model.token_merging import apply_token_merging
from zsvc_pl.model.tower_choice import CHOICES, choose_tower, tower_flags
from zsvc_pl.model.vision_prompts import VisionPrompts

Label = str | tuple[str, ...]
# Upper bounds of the learned parts' sizes: far above any useful value, low enough that a mistyped or edited
# setting (max_frames 1e9 in a checkpoint) is refused instead of allocating gigabytes.
SIZE_LIMITS = {"temporal_depth": 48, "temporal_heads": 64, "max_frames": 4096, "n_ctx": 64, "vision_prompts": 64}  # a label's name, or the texts whose features stand for it


class VideoTextModel(nn.Module):
    """Scores videos against any label list; CoOp context vectors and a temporal transformer are optional.

    Args:
        backbone: the frozen CLIP and its preprocessing facts (``load_clip``).
        templates: prompt templates (already resolved, each with ``{}``).
        descriptions: class name -> extra texts; ``descriptions_mode`` ``add`` or ``replace``.
        temporal: the aggregator (``build_temporal``).
        prompt_learner: CoOp context vectors, or ``None`` for hand-made prompts only.
        zs_mix: at evaluation, logits = (1 - zs_mix) * learned + zs_mix * zero-shot, when something is learnable.
        image_variant: how the image tower was changed after loading (``|tome2``, ``|int8``): part of the
            feature cache's key, not of the checkpoint's backbone identity.
        vision_prompts: learnable tokens in the image tower (``VisionPrompts``), or ``None``.
        compile_tower: run the image tower through ``torch.compile`` (``zsvc_pl.model.image_tower``).
    """

    def __init__(self, backbone: Backbone, templates: list[str], temporal: nn.Module,
                 prompt_learner: PromptLearner | None = None, descriptions: dict[str, list[str]] | None = None,
                 descriptions_mode: str = "add", zs_mix: float = 0.0, image_variant: str = "",
                 vision_prompts: VisionPrompts | None = None, compile_tower: bool = False) -> None:
        super().__init__()
        self.backbone = backbone.model
        self.tokenizer = backbone.tokenizer
        self.identity = backbone.identity
        self.image_variant = image_variant + ("|compiled" if compile_tower else "")
        self.encode_frames = FrameEncoder(self.backbone, compile_tower)
        self.image_size = backbone.image_size
        self.embed_dim = backbone.embed_dim
        self.normalize = ClipNormalize(backbone.image_size, backbone.mean, backbone.std, backbone.interpolation)
        self.templates = list(templates)
        self.descriptions = descriptions
        self.descriptions_mode = descriptions_mode
        self.temporal = temporal
        self.prompt_learner = prompt_learner
        self.zs_mix = zs_mix
        self.vision_prompts = vision_prompts
        self._text_cache: dict[tuple, torch.Tensor] = {}

    @property
    def feature_identity(self) -> str:
        """What frame features depend on (the cache's key): the weights, any change to the image tower, and the
        current values of learned vision prompts, so that features made under one prompt state (or none) are
        never served to another."""
        identity = self.identity + self.image_variant
        if self.vision_prompts is not None:
            identity += "|vision_prompts:" + state_digest(self.vision_prompts.state_dict())
        return identity

    @property
    def learnable(self) -> bool:
        """True when CoOp context vectors, vision prompts or the temporal transformer are present."""
        return (self.prompt_learner is not None or self.vision_prompts is not None
                or isinstance(self.temporal, TemporalTransformer))

    @property
    def trains_on_pixels(self) -> bool:
        """True when a trainable part acts before the image features (then frame features cannot be cached)."""
        return self.vision_prompts is not None or any(p.requires_grad for p in self.backbone.visual.parameters())

    @property
    def device(self) -> torch.device:
        return self.backbone.logit_scale.device

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.backbone.logit_scale.exp().clamp(max=100.0)

    def train(self, mode: bool = True) -> "VideoTextModel":
        """Keep the frozen backbone in eval mode; learned label features are recomputed after any training."""
        super().train(mode)
        self.backbone.eval()
        self.forget_learned_text()
        return self

    def forget_learned_text(self) -> None:
        """Drop cached label features of the learned prompts (their vectors may have changed)."""
        for key in [k for k in self._text_cache if k[0] == "learned"]:
            del self._text_cache[key]

    # --- features ------------------------------------------------------------------------------
    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, V, T, 3, S, S]`` -> L2-normalised image features ``[B, V, T, D]`` (with a gradient only
        to the vision prompts, while training)."""
        b, v, t = video.shape[:3]
        grad = self.training and self.vision_prompts is not None and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            feats = self.encode_frames(self.normalize(video.flatten(0, 2)))
        return F.normalize(feats.float(), dim=-1).view(b, v, t, -1)

    def zeroshot_text_features(self, labels: Sequence[Label]) -> torch.Tensor:
        """Hand-made prompt-ensemble features ``[C, D]``, computed once per label set and cached."""
        if _grouped(labels):
            return _average_groups(self.zeroshot_text_features, labels)
        key = ("fixed", tuple(labels), tuple(self.templates), str(self.device), self.descriptions_mode)
        if key not in self._text_cache:
            prompts = class_prompts(list(labels), self.templates, self.descriptions, self.descriptions_mode)
            self._text_cache[key] = encode_prompts(self.backbone, self.tokenizer, prompts)
        return self._text_cache[key]

    def text_features(self, labels: Sequence[Label]) -> torch.Tensor:
        """Label features ``[C, D]``: learned prompts when CoOp is on (cached in eval mode), else hand-made.
        A label given as a tuple of texts gets the mean of their features (re-normalised)."""
        if _grouped(labels):
            return _average_groups(self.text_features, labels)
        if self.prompt_learner is None:
            return self.zeroshot_text_features(labels)
        if self.training:
            return self.prompt_learner(list(labels))
        key = ("learned", tuple(labels), str(self.device))
        if key not in self._text_cache:
            with torch.no_grad():
                self._text_cache[key] = self.prompt_learner(list(labels))
        return self._text_cache[key]

    def video_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Label-independent video embeddings ``[B, D]`` from frame features ``[B, V, T, D]`` (views averaged)."""
        b, v = frames.shape[:2]
        agg = F.normalize(self.temporal(frames.flatten(0, 1), None), dim=-1).view(b, v, -1)
        return F.normalize(agg.mean(1), dim=-1)

    def video_logits(self, frames: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Frame features ``[B, V, T, D]`` and label features ``[C, D]`` -> logits ``[B, V, C]``."""
        b, v = frames.shape[:2]
        video = F.normalize(self.temporal(frames.flatten(0, 1), text), dim=-1)
        sim = (video * text.unsqueeze(0)).sum(-1) if video.dim() == 3 else video @ text.T
        return (self.logit_scale * sim).view(b, v, -1)

    def eval_logits(self, frames: torch.Tensor, labels: Sequence[Label],
                    examples: ExampleMemory | None = None) -> torch.Tensor:
        """Logits ``[B, V, C]`` for evaluation and prediction (with the zero-shot mix when set, and the
        similarity to each label's example clips when ``examples`` holds any)."""
        logits = self.video_logits(frames, self.text_features(labels))
        if self.zs_mix > 0 and self.learnable:
            zs_video = F.normalize(frames.mean(dim=2), dim=-1)
            zs = self.logit_scale * zs_video @ self.zeroshot_text_features(labels).T
            logits = (1 - self.zs_mix) * logits + self.zs_mix * zs
        if examples is not None and len(examples):
            logits = logits + self.logit_scale * examples.logits(self.video_features(frames)).unsqueeze(1)
        return logits

    def forward(self, video: torch.Tensor, labels: Sequence[Label]) -> torch.Tensor:
        """uint8 video ``[B, V, T, 3, S, S]`` -> label probabilities ``[B, C]`` (softmax averaged over views)."""
        return self.eval_logits(self.frame_features(video), labels).softmax(-1).mean(1)


def _grouped(labels: Sequence[Label]) -> bool:
    return any(isinstance(label, tuple) for label in labels)


def _average_groups(encode, labels: Sequence[Label]) -> torch.Tensor:
    """Features of labels some of which are tuples of texts: each text encoded once, a tuple's averaged."""
    groups = [label if isinstance(label, tuple) else (label,) for label in labels]
    texts = list(dict.fromkeys(t for group in groups for t in group))
    feats = encode(texts)
    row = {t: i for i, t in enumerate(texts)}
    return F.normalize(torch.stack([feats[[row[t] for t in group]].mean(0) for group in groups]), dim=-1)


def create_model(
    model_name: str = "ViT-B-32",
    pretrained: str | None = "openai",
    templates: str | list[str] = "video",
    descriptions: str | None = None,
    descriptions_mode: str = "add",
    temporal: str = "mean",
    temporal_depth: int = 1,
    temporal_heads: int = 4,
    max_frames: int = 32,
    attention_temperature: float = 0.05,
    n_ctx: int = 0,
    ctx_init: str | None = None,
    class_names: list[str] | None = None,
    class_specific_ctx: bool = False,
    class_position: str = "end",
    zs_mix: float = 0.0,
    cache_dir: str | None = None,
    quantize: bool = False,
    token_merging: int = 0,
    vision_prompts: int = 0,
    compile_tower: bool = False,
    tower: str = "fp32",
) -> VideoTextModel:
    """The one factory: backbone by name and weights, prompts, aggregator, optional CoOp vectors and vision
    prompts. Settings out of range are refused before any weights load. ``tower``: how the frozen image tower
    runs (``fp32``, ``compiled``, ``int8``, ``int8-compiled``, or ``auto``: the quickest exact-enough one on this
    machine, ``zsvc_pl.model.tower_choice``); ``quantize`` and ``compile_tower`` are the older spellings."""
    if tower not in CHOICES:
        raise ValueError(f"tower must be one of {', '.join(CHOICES)}, got {tower!r}")
    for name, value, low in (("temporal_depth", temporal_depth, 1), ("temporal_heads", temporal_heads, 1),
                             ("max_frames", max_frames, 1), ("n_ctx", n_ctx, 0), ("vision_prompts", vision_prompts, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= SIZE_LIMITS[name]:
            raise ValueError(f"{name} must be a whole number from {low} to {SIZE_LIMITS[name]}, got {value!r}")
    if not 0 <= zs_mix <= 1:
        raise ValueError(f"zs_mix (the zero-shot logits' share in evaluation) must be between 0 and 1, got {zs_mix}")
    bb = load_clip(model_name, pretrained, cache_dir)
    if tower == "auto" and not vision_prompts and not token_merging:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        tower = choose_tower(bb.model, bb.identity, bb.image_size, device)[0]
    if tower not in ("auto", "fp32"):
        quantize, compile_tower = (a or b for a, b in zip((quantize, compile_tower), tower_flags(tower)))
    if vision_prompts and (token_merging or quantize or compile_tower):
        raise ValueError("vision prompts cannot be combined with token merging, int8 quantisation or a compiled "
                         "image tower")
    apply_token_merging(bb.model.visual, token_merging)
    quantized = quantize and quantize_image_tower(bb.model, only_if_faster=True)
    learner = None
    if n_ctx > 0 or ctx_init:
        names = validate_labels(class_names) if class_names else None
        learner = PromptLearner(bb.model, bb.tokenizer, n_ctx, ctx_init, names, class_specific_ctx, class_position)
    if descriptions_mode not in ("add", "replace"):
        raise ValueError(f"descriptions mode must be 'add' or 'replace', got '{descriptions_mode}'")
    return VideoTextModel(
        bb, load_templates(templates),
        build_temporal(temporal, bb.embed_dim, temporal_depth, temporal_heads, max_frames, attention_temperature),
        learner, load_descriptions(descriptions) if descriptions else None, descriptions_mode, zs_mix,
        (f"|tome{token_merging}" if token_merging else "") + ("|int8" if quantized else ""),
        VisionPrompts(bb.model.visual, vision_prompts) if vision_prompts else None, compile_tower)
