"""Text features from the frozen CLIP text tower: fixed prompt ensembles and CoOp prompt vectors."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from zsvc_pl.labels import humanize_label


@torch.no_grad()
def encode_prompts(model: nn.Module, tokenizer, prompts: list[list[str]], batch_size: int = 256) -> torch.Tensor:
    """Normalised class features ``[C, D]``: mean of normalised prompt features per class, renormalised.

    This is the CLIP paper's prompt ensemble; ``prompts[c]`` lists every prompt string of class ``c``.
    """
    device = next(model.parameters()).device
    flat = [p for group in prompts for p in group]
    _warn_truncation(tokenizer, flat)
    feats = []
    own_tower = hasattr(model, "token_embedding")  # else a custom text tower: its own encode_text
    for i in range(0, len(flat), batch_size):
        tokens = tokenizer(flat[i : i + batch_size])
        if own_tower:
            tokens = tokens[:, : needed_length(model, tokens)].to(device)
            text = encode_embeddings(model, model.token_embedding(tokens), tokens)
        else:
            text = model.encode_text(tokens.to(device))
        feats.append(F.normalize(text.float(), dim=-1))
    feats = torch.cat(feats)
    out, start = [], 0
    for group in prompts:
        out.append(feats[start : start + len(group)].mean(0))
        start += len(group)
    return F.normalize(torch.stack(out), dim=-1)


def _warn_truncation(tokenizer, texts: list[str]) -> None:
    ctx = getattr(tokenizer, "context_length", None)
    encode = getattr(tokenizer, "encode", None)
    if ctx is None or encode is None:
        return
    long = [t for t in texts if len(encode(t)) + 2 > ctx]
    if long:
        warnings.warn(
            f"{len(long)} prompt(s) exceed the text encoder's context of {ctx} tokens and are truncated, "
            f"e.g. {long[0][:80]!r}",
            stacklevel=3,
        )


def text_tower(model: nn.Module) -> nn.Module | None:
    """The module holding the token embedding of an open_clip model's text tower: the model itself (``CLIP``),
    its ``text`` (``CustomTextCLIP``: PE-Core, SigLIP, EVA, ...), or ``None`` (a tower without one)."""
    if hasattr(model, "token_embedding"):
        return model
    text = getattr(model, "text", None)
    return text if hasattr(text, "token_embedding") else None


class PromptLearner(nn.Module):
    """CoOp context vectors fed through the frozen text tower (open_clip ``CLIP`` and ``CustomTextCLIP`` models
    whose tokenizer is open_clip's own: OpenAI CLIP, PE-Core, MetaCLIP, EVA, ...).

    The prompt of a class is ``[SOT] ctx_1..ctx_k <class words> [.] [EOT]`` (``class_position="end"``),
    with the class words in the middle or at the front as options. With ``ctx_init`` (e.g. "a video of")
    the vectors start as that phrase's token embeddings, so before training the learned prompt equals the
    hand-made prompt "a video of <class>." exactly.

    Args:
        model: the frozen open_clip CLIP model (its text tower is used, never trained).
        tokenizer: its tokenizer.
        n_ctx: number of context vectors (taken from ``ctx_init`` when that is given).
        ctx_init: phrase to initialise from, or ``None`` for random init (std 0.02).
        class_names: the classes for class-specific context (ignored when ``class_specific`` is False).
        class_specific: one set of context vectors per class instead of one shared set.
        class_position: ``end``, ``middle`` or ``front``.
    """

    def __init__(self, model: nn.Module, tokenizer, n_ctx: int = 4, ctx_init: str | None = None,
                 class_names: list[str] | None = None, class_specific: bool = False,
                 class_position: str = "end") -> None:
        super().__init__()
        tower = text_tower(model)
        if tower is None:
            raise ValueError("prompt learning needs an open_clip text tower with a token embedding; this "
                             "architecture has none (its text tower comes from another library)")
        if not all(hasattr(tokenizer, a) for a in ("sot_token_id", "eot_token_id", "encode", "context_length")):
            raise ValueError(f"prompt learning needs open_clip's own tokenizer (start and end tokens); this model "
                             f"uses {type(tokenizer).__name__} (SigLIP's Hugging Face tokenizers are not supported "
                             "yet): use hand-made prompts (--model.n_ctx 0)")
        if class_position not in ("end", "middle", "front"):
            raise ValueError(f"class_position must be end, middle or front, got {class_position!r}")
        self._model = [model]  # a list keeps the frozen model out of this module's parameters
        self.tokenizer = tokenizer
        self.class_position = class_position
        width = tower.token_embedding.weight.shape[1]
        init = None
        if ctx_init:
            ids = tokenizer.encode(ctx_init)
            n_ctx = len(ids)
            with torch.no_grad():
                init = tower.token_embedding.weight[torch.tensor(ids)].clone().float()
        self.n_ctx = n_ctx
        self.class_names = list(class_names or [])
        n_sets = len(self.class_names) if class_specific else 1
        if class_specific and n_sets == 0:
            raise ValueError("class-specific context needs class_names")
        ctx = init.expand(n_sets, -1, -1).clone() if init is not None else torch.randn(n_sets, n_ctx, width) * 0.02
        self.ctx = nn.Parameter(ctx)
        self.class_specific = class_specific
        self._ids_cache: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        self._emb_cache: dict[tuple, torch.Tensor] = {}  # frozen token embeddings of a layout, per device

    def _token_layout(self, labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids with placeholders (0) at context slots, and the boolean context mask."""
        key = tuple(labels)
        if key not in self._ids_cache:
            tok = self.tokenizer
            ctx_len = tok.context_length
            ids = torch.zeros(len(labels), ctx_len, dtype=torch.long)
            mask = torch.zeros(len(labels), ctx_len, dtype=torch.bool)
            before = {"end": self.n_ctx, "middle": self.n_ctx // 2, "front": 0}[self.class_position]
            for i, label in enumerate(labels):
                words = tok.encode(humanize_label(label) + ".")
                room = ctx_len - 2 - self.n_ctx
                if len(words) > room:
                    warnings.warn(f"label {label!r} is truncated to fit the text context", stacklevel=3)
                    words = words[:room]
                seq = [tok.sot_token_id] + [-1] * before + words + [-1] * (self.n_ctx - before) + [tok.eot_token_id]
                row = torch.tensor(seq)
                mask[i, : len(seq)] = row == -1
                ids[i, : len(seq)] = row.clamp(min=0)
            n = needed_length(self._model[0], ids)
            self._ids_cache[key] = (ids[:, :n], mask[:, :n])
        return self._ids_cache[key]

    def forward(self, labels: list[str]) -> torch.Tensor:
        """Normalised text features ``[C, D]`` for ``labels`` through the learned prompt."""
        model = self._model[0]
        device = self.ctx.device
        ids, mask = (t.to(device) for t in self._token_layout(labels))
        key = (tuple(labels), str(device))
        if key not in self._emb_cache:  # the embedding table is frozen: look the words up once, not every step
            with torch.no_grad():
                self._emb_cache[key] = text_tower(model).token_embedding(ids).float()
        emb = self._emb_cache[key]
        if self.class_specific:
            try:
                rows = [self.class_names.index(label) for label in labels]
            except ValueError as e:
                raise ValueError(f"class-specific context has no vectors for a label: {e}") from None
            ctx = self.ctx[rows]
        else:
            ctx = self.ctx.expand(len(labels), -1, -1)
        emb = emb.masked_scatter(mask.unsqueeze(-1), ctx.to(emb.dtype))
        return F.normalize(encode_embeddings(model, emb, ids), dim=-1)


def needed_length(model: nn.Module, ids: torch.Tensor) -> int:
    """Token positions the text tower must run for ``ids``: up to the longest prompt's end-of-text token for a
    standard open_clip CLIP (causal attention, pooled at that token: later positions cannot change the result;
    a 77-token context holding "a video of <label>." needs about 5x fewer), else the whole context."""
    causal = getattr(model, "attn_mask", None) is not None and getattr(model, "text_pool_type", None) == "argmax"
    return int(ids.argmax(dim=-1).max()) + 1 if causal else ids.shape[1]  # a custom tower takes its whole context


def encode_embeddings(model: nn.Module, emb: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """open_clip ``encode_text`` from token embeddings instead of token ids, for ``ids.shape[1]`` positions
    (callers cut the context to ``needed_length`` once, where the ids are made). A ``CustomTextCLIP`` text tower
    runs its own forward with its token embedding's output replaced by ``emb`` (its masks, pooling and
    projection are its own)."""
    from open_clip.transformer import text_global_pool

    if not hasattr(model, "token_embedding"):
        tower = text_tower(model)
        hook = tower.token_embedding.register_forward_hook(lambda module, args, out: emb.to(out.dtype))
        try:
            out = tower(ids)
        finally:
            hook.remove()
        return (out[0] if isinstance(out, tuple) else out).float()

    cast = model.transformer.get_cast_dtype()
    length = ids.shape[1]
    mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
    x = model.transformer(emb.to(cast) + model.positional_embedding[:length].to(cast), attn_mask=mask)
    x = model.ln_final(x)
    x = text_global_pool(x, ids, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, nn.Linear) else x @ model.text_projection
    return x.float()
