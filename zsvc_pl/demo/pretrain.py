"""Pretrain the demo backbone: a small open_clip model, CLIP loss on single frames and frame captions.

Captions describe one frame only (colour, shape, where the object is), never motion. Three choices make
the frozen text tower tell the position words apart, which the temporal model later needs:
  - every batch holds each (colour, shape, position) once, so position words are hard negatives;
  - some captions name only part of the scene (e.g. "something on the left"); targets are soft over
    every image the caption is true of, so partial captions carry no false negatives;
  - random vocabulary tokens and generic prefixes are inserted now and then, so unknown words in a
    later label ("moving") do not drown the words the tower knows.

    python -m zsvc_pl.demo.pretrain --steps 1200 --out zsvc_pl/assets/demo-clip.safetensors
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zsvc_pl.model.backbone import DEMO_MODEL_CONFIG
from zsvc_pl.model.preprocess import ClipNormalize
from zsvc_pl.demo.world import COLOURS, DIRECTIONS, SHAPES, render_still

POSITION_WORDS = {
    "left": ["on the left", "to the left", "at the left", "on the left side", "left"],
    "right": ["on the right", "to the right", "at the right", "on the right side", "right"],
    "top": ["at the top", "to the top", "on the top", "at the top side", "top"],
    "bottom": ["at the bottom", "to the bottom", "on the bottom", "at the bottom side", "bottom"],
}
PREFIXES = ["", "", "", "a photo of ", "a picture of ", "an image of ", "a frame of ", "a video of ", "there is "]
# Which attributes a caption names: (colour, shape, position); weights of each kind.
CAPTION_KINDS = [((1, 1, 1), 0.55), ((1, 1, 0), 0.1), ((0, 1, 1), 0.1), ((1, 0, 1), 0.1), ((0, 0, 1), 0.15)]


def caption(colour: str, shape: str, position: str, kind: tuple[int, int, int], rng: np.random.Generator) -> str:
    """A caption naming the attributes selected by ``kind``."""
    if kind[0] or kind[1]:
        noun = shape if kind[1] else str(rng.choice(["object", "shape", "thing"]))
        obj = f"{colour} {noun}" if kind[0] else noun
        obj = ("an " if obj[0] in "aeiou" else "a ") + obj
    else:
        obj = str(rng.choice(["something", "an object", "a shape", "a thing"]))
    text = obj
    if kind[2]:
        where = str(rng.choice(POSITION_WORDS[position]))
        text = f"{where}, {obj}" if rng.random() < 0.15 else f"{obj} {where}"
    return str(rng.choice(PREFIXES)) + text


def make_batch(rng: np.random.Generator, extra: int, frame_size: int):
    """Images ``[B, H, W, 3]``, captions, and the attribute table used for soft targets."""
    combos = list(itertools.product(COLOURS, SHAPES, DIRECTIONS))
    combos += [combos[i] for i in rng.integers(0, len(combos), extra)]
    kinds, weights = zip(*CAPTION_KINDS)
    images, texts, attrs, masks = [], [], [], []
    for colour, shape, position in combos:
        kind = kinds[rng.choice(len(kinds), p=np.array(weights) / sum(weights))]
        images.append(render_still(colour, shape, position, rng, frame_size))
        texts.append(caption(colour, shape, position, kind, rng))
        attrs.append((list(COLOURS).index(colour), SHAPES.index(shape), DIRECTIONS.index(position)))
        masks.append(kind)
    return np.stack(images), texts, torch.tensor(attrs), torch.tensor(masks, dtype=torch.bool)


def soft_targets(attrs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``[B_img, B_txt]``: 1 where caption j is true of image i (every attribute it names matches)."""
    same = attrs[:, None, :] == attrs[None, :, :]  # [img, txt, 3]
    return (same | ~masks[None, :, :]).all(-1).float()


def tokenize_with_noise(tokenizer, texts: list[str], rng: np.random.Generator, p: float) -> torch.Tensor:
    """Tokenize; with probability ``p`` per caption insert a random vocabulary token at a random place."""
    tokens = tokenizer(texts)
    for i in np.flatnonzero(rng.random(len(texts)) < p):
        row = tokens[i]
        end = int(row.argmax())  # EOT position
        if end + 1 >= row.numel():
            continue
        at = int(rng.integers(1, end + 1))
        row[at + 1 : end + 2] = row[at : end + 1].clone()
        row[at] = int(rng.integers(300, 49000))
    return tokens


@torch.no_grad()
def evaluate(model, tokenizer, normalize, rng: np.random.Generator, frame_size: int, n: int = 384) -> dict:
    """Single-frame zero-shot accuracies and the direction-prompt cosines used in the README table."""
    combos = list(itertools.product(COLOURS, SHAPES, DIRECTIONS))
    picks = [combos[i] for i in rng.integers(0, len(combos), n)]
    imgs = torch.from_numpy(np.stack([render_still(c, s, p, rng, frame_size) for c, s, p in picks]))
    feats = F.normalize(model.encode_image(normalize(imgs.permute(0, 3, 1, 2))), dim=-1)

    def text(ts: list[str]) -> torch.Tensor:
        return F.normalize(model.encode_text(tokenizer(ts)), dim=-1)

    cs = list(itertools.product(COLOURS, SHAPES))
    cs_text = text([f"a photo of a {c} {s}." for c, s in cs])
    cs_idx = torch.tensor([cs.index((c, s)) for c, s, _ in picks])
    cs_acc = ((feats @ cs_text.T).argmax(-1) == cs_idx).float().mean()
    pos_idx = torch.tensor([DIRECTIONS.index(p) for _, _, p in picks])
    on = text([f"a {c} {s} {POSITION_WORDS[d][0]}." for c, s in cs for d in DIRECTIONS]).view(len(cs), 4, -1)
    mv = text([f"a video of a {c} {s} moving to the {d}." for c, s in cs for d in DIRECTIONS]).view(len(cs), 4, -1)
    pos_acc = (torch.einsum("nd,nkd->nk", feats, on[cs_idx]).argmax(-1) == pos_idx).float().mean()
    move_acc = (torch.einsum("nd,nkd->nk", feats, mv[cs_idx]).argmax(-1) == pos_idx).float().mean()
    cos = torch.einsum("ckd,cjd->ckj", mv, mv).mean(0)
    off = cos[~torch.eye(4, dtype=torch.bool)]
    return {"colour_shape_top1": float(cs_acc), "position_top1": float(pos_acc),
            "position_top1_direction_prompts": float(move_acc),
            "direction_prompt_cosine_max": float(off.max()), "direction_prompt_cosine_mean": float(off.mean()),
            "direction_prompt_cosine": [[round(float(x), 3) for x in row] for row in cos]}


def pretrain(steps: int = 1000, out: str | Path | None = None, seed: int = 0, lr: float = 1e-3, extra: int = 32,
             frame_size: int = 96, noise_p: float = 0.25, log_every: int = 50) -> dict:
    """Train the demo CLIP from scratch and save its weights (fp16 safetensors, which open_clip loads like any
    checkpoint; unlike torch.save's archive, the same weights always give the same bytes)."""
    import open_clip

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    open_clip.add_model_config(DEMO_MODEL_CONFIG)
    model = open_clip.create_model(DEMO_MODEL_CONFIG.stem, pretrained=None)
    tokenizer = open_clip.get_tokenizer(DEMO_MODEL_CONFIG.stem)
    pp = model.visual.preprocess_cfg
    normalize = ClipNormalize(pp["size"] if isinstance(pp["size"], int) else pp["size"][0], pp["mean"], pp["std"])
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.08)
    start = time.perf_counter()
    model.train()
    losses = []
    for step in range(1, steps + 1):
        imgs, texts, attrs, masks = make_batch(rng, extra, frame_size)
        x = normalize(torch.from_numpy(imgs).permute(0, 3, 1, 2))
        tokens = tokenize_with_noise(tokenizer, texts, rng, noise_p)
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(tokens), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        target = soft_targets(attrs, masks)
        loss = 0.5 * (F.cross_entropy(logits, target / target.sum(1, keepdim=True))
                      + F.cross_entropy(logits.T, target.T / target.T.sum(1, keepdim=True)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % log_every == 0 or step == steps:
            print(f"step {step}/{steps} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f} "
                  f"{time.perf_counter() - start:.0f}s", flush=True)
    model.eval()
    report = evaluate(model, tokenizer, normalize, np.random.default_rng(seed + 1), frame_size)
    report.update(steps=steps, seconds=round(time.perf_counter() - start, 1), seed=seed,
                  first_loss=losses[0], last_loss=losses[-1])
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_weights(model.state_dict(), out)
        report["weights"] = str(out)
        report["megabytes"] = round(out.stat().st_size / 2**20, 2)
    return report


def save_weights(state_dict: dict, path: str | Path) -> None:
    """fp16 safetensors file of a state dict."""
    from safetensors.torch import save_file

    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state_dict.items()}, str(path))


def evaluate_weights(weights: str | Path, seed: int = 0, frame_size: int = 96) -> dict:
    """The single-frame report of :func:`evaluate` for saved weights, loaded like any backbone."""
    from zsvc_pl.model.backbone import load_clip

    bb = load_clip(str(DEMO_MODEL_CONFIG), str(weights))
    normalize = ClipNormalize(bb.image_size, bb.mean, bb.std, bb.interpolation)
    report = evaluate(bb.model, bb.tokenizer, normalize, np.random.default_rng(seed + 1), frame_size)
    return {"weights": str(weights), "identity": bb.identity, **report}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", default=None, help="where to write the weights (.safetensors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (fixed for reproducibility)")
    parser.add_argument("--evaluate", metavar="WEIGHTS", help="only evaluate these weights (e.g. the shipped ones)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.evaluate:
        report = evaluate_weights(args.evaluate, args.seed)
    else:
        report = pretrain(args.steps, args.out, args.seed, args.lr)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
