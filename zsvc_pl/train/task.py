"""VideoClassificationTask: the LightningModule around a ``VideoTextModel`` (losses, metrics, optimizer,
checkpoint identity). ``forward`` delegates to the model, as torchgeo's tasks do; files and decoding stay in the
data layer, and the notebook API is ``zsvc_pl.api.ZeroShotVideoClassifier``."""

from __future__ import annotations

import inspect
import logging
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from lightning import LightningModule
from lightning.pytorch.utilities import rank_zero_info

from zsvc_pl.labels import validate_labels
from zsvc_pl.model.abstention import NONE_LABEL, open_set_score
from zsvc_pl.model.examples import DEFAULT_WEIGHT, ExampleMemory, check_example_weight
from zsvc_pl.model.temporal import TemporalTransformer
from zsvc_pl.model.video_text import create_model
from zsvc_pl.train.checkpoints import check_trainable_state, prepare_state, save_state
from zsvc_pl.train.features import batch_features
from zsvc_pl.train.metrics import StageMetrics
from zsvc_pl.train.optim import adamw_warmup_cosine

log = logging.getLogger(__name__)
WARNED_SKIPS = 20  # skipped videos named on the console per stage; errors.csv lists them all
# By design: checkpoints hold no backbone weights, and the frozen backbone stays in eval mode.
warnings.filterwarnings("ignore", message=r"Found keys that are in the model state dict but not in the checkpoint: "
                                          r"\['model\.backbone")
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


class VideoClassificationTask(LightningModule):
    """Train and evaluate a ``VideoTextModel``: zero-shot ``test``/``predict``, or ``fit`` of its learnable parts.

    With ``n_ctx=0``, no ``ctx_init`` and ``temporal`` in (mean, text_attention) nothing is trainable: this is the
    zero-shot path. ``temporal="transformer"`` and/or CoOp context vectors make it trainable on base classes;
    ``text_reg_weight`` and ``zs_mix`` keep novel classes close to zero-shot.

    Args:
        model_name: open_clip architecture, ``hf-hub:`` id, config JSON path, or ``demo``.
        pretrained: open_clip tag, checkpoint file, ``demo``, or ``None``/``none`` for random weights.
        class_names: the classes of the dataset (label ids index into it; the CLI links them from the data).
        templates: built-in template set name, template file, single template, or list of templates.
        descriptions: YAML/JSON mapping class name -> descriptions/synonyms; ``descriptions_mode`` add/replace.
        temporal: ``mean``, ``text_attention`` (parameter-free) or ``transformer`` (learnable).
        temporal_depth, temporal_heads, max_frames: transformer settings.
        attention_temperature: softmax temperature of ``text_attention``.
        n_ctx: CoOp context vectors (0 = off); ``ctx_init`` initialises them from a phrase.
        class_specific_ctx: one context per class instead of a shared one.
        class_position: where the class words go in the learned prompt: end, middle or front.
        text_reg_weight: weight of the KgCoOp loss ``1 - cos(learned, hand-made)`` on text features (CoOp only).
        zs_mix: at evaluation, logits = (1 - zs_mix) * learned + zs_mix * zero-shot (mean pooling, fixed prompts);
            only when the model has learnable parts.
        base_classes: indices of the base classes; training sees only these, evaluation reports base/novel/HM.
        lr, weight_decay: AdamW settings for the trainable parameters.
        top_k: labels written per video by ``predict``; ``abstain``: open-set threshold below which ``predict``
            writes ``none`` first (``zsvc_pl.model.abstention``; ``test`` reports the threshold for 95 % recall).
        example_weight: weight of a label set's example clips against its texts (``zsvc_pl.model.examples``).
        cache_dir: where open_clip looks for and stores downloaded weights.
        quantize: int8 image-tower projections for CPU inference (faster only with ``compile_tower``).
        token_merging: tokens merged per image-tower block (ToMe), 0 for none: faster, slightly different.
        compile_tower: run the image tower through ``torch.compile`` (compiled once per run, then faster).
        tower: ``fp32``, ``compiled``, ``int8``, ``int8-compiled`` or ``auto`` (the quickest tower within cosine
            0.999 of fp32 on this machine, measured once and kept; ``zsvc_pl.model.tower_choice``).
        vision_prompts: learnable tokens per image-tower block (VPT-deep), 0 for none; trained through the tower.
        allow_unidentified_checkpoint: load a checkpoint that does not record its backbone (older or foreign
            files) on whatever backbone is configured; off by default, since a wrong backbone gives wrong scores.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = "openai",
        class_names: list[str] | None = None,
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
        class_specific_ctx: bool = False,
        class_position: str = "end",
        text_reg_weight: float = 8.0,
        zs_mix: float = 0.2,
        base_classes: list[int] | None = None,
        lr: float = 2e-3,
        weight_decay: float = 0.01,
        top_k: int = 5,
        abstain: float | None = None,
        example_weight: float = DEFAULT_WEIGHT,
        cache_dir: str | None = None,
        quantize: bool = False,
        token_merging: int = 0,
        compile_tower: bool = False,
        vision_prompts: int = 0,
        allow_unidentified_checkpoint: bool = False,
        tower: str = "fp32",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if top_k < 1:
            raise ValueError(f"model.top_k (labels written per video) must be at least 1, got {top_k}")
        if lr <= 0:
            raise ValueError(f"model.lr must be above 0, got {lr}")
        for name, value in (("weight_decay", weight_decay), ("text_reg_weight", text_reg_weight)):
            if value < 0:
                raise ValueError(f"model.{name} must be 0 or more, got {value}")
        check_example_weight(example_weight)
        self.class_names = validate_labels(class_names, "model.class_names", unit="item") if class_names else None
        self.base_classes = list(base_classes) if base_classes is not None else None
        model_args = inspect.signature(create_model).parameters  # the task's hyper-parameters that build the model
        self.model = create_model(**{**{k: v for k, v in self.hparams.items() if k in model_args},
                                     "class_names": self.class_names})
        self.strict_loading = False  # checkpoints hold no backbone weights
        self.decode_errors: list[tuple[str, str]] = []
        self.feature_cache = None
        self.label_prompts: list | None = None  # a label set's texts per label (test/predict)
        self.examples: ExampleMemory | None = None  # a label set's example clips
        self.video_predictions: dict[str, str] = {}  # path -> top label of the current test/predict (run card)

    @property
    def backbone_identity(self) -> str:
        return self.model.identity

    def forward(self, video: torch.Tensor, labels: Sequence[str] | None = None) -> torch.Tensor:
        """uint8 video ``[B, V, T, 3, S, S]`` -> class probabilities ``[B, C]`` (softmax averaged over views)."""
        return self.model(video, labels or self._require_labels())

    def _require_labels(self) -> list[str]:
        if not self.class_names:
            raise ValueError("no class names: set model.class_names or give the data module a dataset")
        return self.class_names

    # --- checkpoints ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        save_state(checkpoint, self.backbone_identity)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        prepare_state(checkpoint, self.backbone_identity, self.hparams.allow_unidentified_checkpoint)
        check_trainable_state(checkpoint["state_dict"], {k: v for k, v in self.state_dict().items()
                                                         if not k.startswith("model.backbone.")})
        self.model.forget_learned_text()

    # --- Lightning hooks ---------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        cache = getattr(dm, "feature_cache", None)
        if cache is not None and self.model.vision_prompts is not None and stage != "fit":
            log.warning("zsvc_pl: the feature cache is not used: frame features depend on the learned vision prompts")
        elif cache is not None:  # the data module opened it; features belong to this backbone
            self.feature_cache = cache.bind(self.model.feature_identity, self.model.embed_dim)
        names = self._require_labels()
        if len(names) < 2 and stage != "predict":  # predict may ask one question, e.g. with model.abstain
            raise ValueError(f"{getattr(stage, 'value', stage)} needs at least 2 classes to tell apart, got 1 "
                             f"({names[0]!r}): accuracy over one class is always 100 %")
        if stage == "fit" and not self.model.learnable:
            raise ValueError("nothing to train: set model.temporal=transformer and/or model.n_ctx>0 "
                             "(zero-shot evaluation needs no fit: use `test`)")
        if stage == "fit" and cache is not None and self.model.trains_on_pixels:
            raise ValueError("--data.feature_cache cannot train this model: a trainable part acts on the pixels, so "
                             "frame features change while training; drop the cache for fit")
        self.train_videos = 0  # videos read in the current training epoch (this rank)
        self.last_results: dict[str, dict] = {}
        if stage != "predict":
            self.evaluation = torch.nn.ModuleDict({s: StageMetrics(len(names), s, self.base_classes)
                                                   for s in ("val", "test")})

    def batch_features(self, batch: dict) -> torch.Tensor:
        return batch_features(self.model, batch, self.feature_cache)

    def _base_names(self) -> tuple[list[str], torch.Tensor | None]:
        names = self._require_labels()
        if self.base_classes is None:
            return names, None
        remap = torch.full((len(names),), -1, dtype=torch.long)
        remap[torch.tensor(self.base_classes)] = torch.arange(len(self.base_classes))
        return [names[i] for i in self.base_classes], remap

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor | None:
        self._collect_errors(batch)
        self.train_videos += len(batch["path"])
        if not batch["path"]:
            return None
        names, remap = self._base_names()
        target = batch["label"] if remap is None else remap.to(self.device)[batch["label"]]
        text = self.model.text_features(names)
        logits = self.model.video_logits(self.batch_features(batch), text)[:, 0]
        loss = F.cross_entropy(logits, target)
        self.log("train/ce", loss, prog_bar=True, batch_size=len(target))
        if self.model.prompt_learner is not None and self.hparams.text_reg_weight > 0:
            reg = (1 - (text * self.model.zeroshot_text_features(names)).sum(-1)).mean()
            loss = loss + self.hparams.text_reg_weight * reg
            self.log("train/text_reg", reg, batch_size=len(target))
        self.log("train/acc", (logits.argmax(-1) == target).float().mean(), prog_bar=True, batch_size=len(target))
        return loss

    def _eval_step(self, batch: dict, stage: str) -> None:
        self._collect_errors(batch)
        self.evaluation[stage].count(len(batch["path"]))
        if not batch["path"]:
            return
        probs = self.evaluation[stage].update(self._scores(batch), batch["label"], self.model.logit_scale)
        names = self._require_labels()
        self.video_predictions.update(zip(batch["path"], [names[i] for i in probs.argmax(-1).tolist()]))

    def _eval_epoch_end(self, stage: str) -> None:
        result = self.evaluation[stage].compute()
        self.last_results.pop(stage, None)  # none for an epoch that read no video (RunReport says so and stops)
        if result is not None:
            self.log_dict(result["metrics"])
            self.last_results[stage] = result

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_train_epoch_start(self) -> None:
        self.train_videos = 0

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        self._collect_errors(batch)
        if not batch["path"]:
            return []
        names, threshold = self._require_labels(), self.hparams.abstain
        logits = self._scores(batch)
        probs = logits.softmax(-1).mean(1)
        scores, idx = probs.topk(min(self.hparams.top_k, len(names)), dim=-1)
        best = open_set_score(logits.mean(1) / self.model.logit_scale).tolist()
        rows = [{"path": p, "labels": [names[j] for j in i.tolist()], "scores": s.tolist(), "stamp": st}
                for p, i, s, st in zip(batch["path"], idx.cpu(), scores.cpu(), batch["stamps"])]
        for row, b in zip(rows, best):
            if threshold is not None and b < threshold:  # "none of these" first, with its open-set score
                row["labels"], row["scores"] = [NONE_LABEL] + row["labels"], [b] + row["scores"]
        self.video_predictions.update((row["path"], row["labels"][0]) for row in rows)
        return rows

    def _scores(self, batch: dict) -> torch.Tensor:
        """Logits ``[B, V, C]`` of a batch against the labels (their texts and example clips when given)."""
        labels = self.label_prompts or self._require_labels()
        logits = self.model.eval_logits(self.batch_features(batch), labels, self.examples)
        if not torch.isfinite(logits).all():
            raise FloatingPointError(f"non-finite scores for {batch['path'][0]} ...: the backbone weights or cached "
                                     "features hold NaN/inf; no results are reported from such a run")
        return logits

    def on_test_start(self) -> None:
        self._read_label_set()

    def on_predict_start(self) -> None:
        self._read_label_set()

    @torch.inference_mode()
    def _read_label_set(self) -> None:
        """Texts and example clips of the data module's label set: the clips are encoded once, here."""
        dm = self.trainer.datamodule
        label_set, loader = getattr(dm, "label_set", None), getattr(dm, "example_dataloader", lambda: None)()
        self.label_prompts = label_set.prompts if label_set is not None else None
        if loader is None:
            return
        feats, owner = [], []
        for batch in loader:
            feats.append(self.model.video_features(self.batch_features(batch)))
            owner += batch["label"].tolist()
        self.examples = ExampleMemory(torch.cat(feats), owner, len(label_set.names), self.hparams.example_weight)

    def _collect_errors(self, batch: dict) -> None:
        for path, reason in batch.get("errors", []):
            self.decode_errors.append((path, reason))
            if len(self.decode_errors) <= WARNED_SKIPS:
                log.warning("skipped %s: %s", path, reason)
            elif len(self.decode_errors) == WARNED_SKIPS + 1:  # 50,000 broken files are not 50,000 lines
                log.warning("more videos skipped: each is listed with its reason in errors.csv at the end")

    def configure_optimizers(self) -> dict:
        params = [p for p in self.parameters() if p.requires_grad]
        total = sum(p.numel() for p in self.parameters())
        rank_zero_info(f"zsvc_pl: {sum(p.numel() for p in params):,} trainable parameters out of {total:,}")
        temporal = self.model.temporal
        positions = [temporal.pos] if isinstance(temporal, TemporalTransformer) else []
        return adamw_warmup_cosine(params, positions, self.hparams.lr, self.hparams.weight_decay,
                                   self.trainer.estimated_stepping_batches)
