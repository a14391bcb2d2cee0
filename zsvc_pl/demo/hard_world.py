"""A harder base-to-novel world: classes that only time tells apart, named in words the backbone never read,
tested under a shift it never trained on.

Six families of eight classes, each split four base / four novel so that every novel class is an unseen
combination of parts seen in base classes:
  - two-phase motions ("moves left, then up"): no single frame, and no average of frames, tells the order;
  - speed ("moves slowly to the right" / "quickly"): the same path, shorter or longer;
  - colour change ("turns from red to blue"): the average frame of red->blue is that of blue->red;
  - appearing / vanishing at a place: the same frames in the other order;
  - close shades ("a dark red thing moving right" / "light red"): fine-grained colour;
  - similar shapes ("a diamond moving to the left" / "a square", "a ring" / "a disc"): fine-grained shape.
The object's colour and shape are nuisances except where the class names them. Class names use the words people
write ("up", "quickly", "turns", "vanishes", "dark", "diamond", "ring", "disc"), which the demo backbone's
captions never contained (they say "at the top", name six colours and four shapes). Test videos are shifted from
training: darker or brighter backgrounds, stronger noise, larger objects, a second, small, still object in a corner
(clutter, in a colour the class does not use) and defocus blur, none of which any training video shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zsvc_pl.demo.world import COLOURS, SHAPES, background, draw, draw_rgb, shape_mask, write_video

STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
PLACE = {"left": (0.22, 0.5), "right": (0.78, 0.5), "top": (0.5, 0.22), "bottom": (0.5, 0.78)}
CHANGE = ("red", "blue", "green", "yellow")
OUTLINE = {"diamond": "diamond", "square": "square", "ring": "ring", "disc": "circle"}  # class word -> drawn shape
CORNERS = ((0.14, 0.14), (0.86, 0.14), (0.14, 0.86), (0.86, 0.86))  # where clutter sits: on no class's path


def _families() -> list[tuple[str, dict, bool]]:
    """(name, parameters, is_base) for every class, in a fixed order."""
    out = []
    for (d1, d2), base in [(("left", "up"), 1), (("right", "down"), 1), (("up", "right"), 1), (("down", "left"), 1),
                           (("left", "down"), 0), (("right", "up"), 0), (("up", "left"), 0), (("down", "right"), 0)]:
        out.append((f"moves {d1}, then {d2}", {"kind": "two_phase", "d1": d1, "d2": d2}, bool(base)))
    for (speed, d), base in [(("slowly", "left"), 1), (("quickly", "right"), 1), (("slowly", "up"), 1),
                             (("quickly", "down"), 1), (("quickly", "left"), 0), (("slowly", "right"), 0),
                             (("quickly", "up"), 0), (("slowly", "down"), 0)]:
        where = f"to the {d}" if d in ("left", "right") else d
        out.append((f"moves {speed} {where}", {"kind": "speed", "d": d, "fast": speed == "quickly"}, bool(base)))
    pairs = [(0, 1), (1, 2), (2, 3), (3, 0), (1, 0), (2, 1), (3, 2), (0, 3)]
    for k, (a, b) in enumerate(pairs):
        out.append((f"turns from {CHANGE[a]} to {CHANGE[b]}", {"kind": "change", "c1": CHANGE[a], "c2": CHANGE[b]},
                    k < 4))
    for (verb, p), base in [(("appears", "left"), 1), (("appears", "top"), 1), (("vanishes", "right"), 1),
                            (("vanishes", "bottom"), 1), (("appears", "right"), 0), (("appears", "bottom"), 0),
                            (("vanishes", "left"), 0), (("vanishes", "top"), 0)]:
        where = f"on the {p}" if p in ("left", "right") else f"at the {p}"
        out.append((f"{verb} {where}", {"kind": verb, "p": p}, bool(base)))
    for (tone, c), base in [(("dark", "red"), 1), (("light", "blue"), 1), (("dark", "green"), 1),
                            (("light", "yellow"), 1), (("light", "red"), 0), (("dark", "blue"), 0),
                            (("light", "green"), 0), (("dark", "yellow"), 0)]:
        out.append((f"a {tone} {c} thing moving right", {"kind": "shade", "tone": tone, "c": c}, bool(base)))
    for (shape, d), base in [(("diamond", "left"), 1), (("square", "right"), 1), (("ring", "right"), 1),
                             (("disc", "left"), 1), (("diamond", "right"), 0), (("square", "left"), 0),
                             (("ring", "left"), 0), (("disc", "right"), 0)]:
        out.append((f"a {shape} moving to the {d}", {"kind": "outline", "shape": shape, "d": d}, bool(base)))
    return out


def hard_classes() -> list[str]:
    """The 48 class names."""
    return [name for name, _, _ in _families()]


def hard_base_novel() -> tuple[list[str], list[str]]:
    """The 24 base and 24 novel class names."""
    fam = _families()
    return [n for n, _, b in fam if b], [n for n, _, b in fam if not b]


def _shade(colour: str, tone: str) -> np.ndarray:
    rgb = np.array(COLOURS[colour], dtype=float)
    return rgb * 0.55 if tone == "dark" else rgb + (255 - rgb) * 0.45


def _clutter(bg: np.ndarray, used: set[str], r: float, rng: np.random.Generator) -> np.ndarray:
    """The background with a still object in a random corner, of a colour the class's object does not use."""
    colour = str(rng.choice([c for c in COLOURS if c not in used]))
    cx, cy = CORNERS[int(rng.integers(len(CORNERS)))]
    out = bg.copy()
    out[shape_mask(str(rng.choice(SHAPES)), bg.shape[0], cx * bg.shape[0], cy * bg.shape[0], r)] = COLOURS[colour]
    return out


def _blur(frame: np.ndarray) -> np.ndarray:
    """Defocus: a separable [1, 2, 1] / 4 blur, twice (about a 1-pixel Gaussian)."""
    f = frame.astype(np.float32)
    for _ in range(2):
        for axis in (0, 1):
            f = (np.roll(f, 1, axis) + 2 * f + np.roll(f, -1, axis)) / 4
    return np.clip(f.round(), 0, 255).astype(np.uint8)


def render_hard(params: dict, rng: np.random.Generator, shifted: bool, size: int = 64,
                num_frames: int = 16) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` of one class; ``shifted``: the test domain (lighting, noise, object size, clutter,
    blur)."""
    bg = background(rng, size)
    if shifted:  # darker or brighter than any training background, noisier, bigger objects
        bg = np.clip(bg - bg.mean() + (rng.uniform(15, 40) if rng.random() < 0.5 else rng.uniform(200, 235)), 0, 255)
    noise = rng.uniform(10, 16) if shifted else rng.uniform(2, 8)
    r = (rng.uniform(0.15, 0.19) if shifted else rng.uniform(0.09, 0.13)) * size
    kind = params["kind"]
    shape = OUTLINE[params["shape"]] if kind == "outline" else str(rng.choice(SHAPES))
    colour = str(rng.choice(list(COLOURS)))
    if shifted:
        used = {colour, params.get("c1"), params.get("c2"), params.get("c")}
        bg = _clutter(bg, used, rng.uniform(0.36, 0.48) * r, rng)
    t = np.linspace(0, 1, num_frames)
    path = np.zeros((num_frames, 2))
    show = np.ones(num_frames, dtype=bool)
    colours = [colour] * num_frames
    switch = int(rng.integers(num_frames // 2 - 2, num_frames // 2 + 3))
    if kind == "two_phase":
        a, b = np.array(STEP[params["d1"]]), np.array(STEP[params["d2"]])
        start = 0.5 - 0.16 * (a + b) + rng.uniform(-0.05, 0.05, 2)
        first = np.clip(t * 2, 0, 1)[:, None]
        second = np.clip(t * 2 - 1, 0, 1)[:, None]
        path = start + 0.32 * (first * a + second * b)
    elif kind in ("speed", "shade", "outline"):
        d = np.array(STEP[params.get("d", "right")])
        length = (rng.uniform(0.45, 0.6) if params.get("fast") else rng.uniform(0.1, 0.16)) if kind == "speed" \
            else 0.4
        start = 0.5 - d * length / 2 + rng.uniform(-0.08, 0.08, 2) * (1 - np.abs(d))
        path = start + t[:, None] * length * d
    elif kind == "change":
        path[:] = rng.uniform(0.3, 0.7, 2)
        colours = [params["c1"] if i < switch else params["c2"] for i in range(num_frames)]
    else:  # appears / vanishes
        path[:] = np.array(PLACE[params["p"]]) + rng.uniform(-0.05, 0.05, 2)
        show = np.arange(num_frames) >= switch if kind == "appears" else np.arange(num_frames) < switch
    frames = []
    for i in range(num_frames):
        if not show[i]:
            frames.append(np.clip(bg + rng.normal(0, noise, bg.shape), 0, 255).astype(np.uint8))
            continue
        x, y = path[i] * size
        if kind == "shade":
            rgb = np.clip(_shade(params["c"], params["tone"]) + rng.normal(0, 6, 3), 0, 255)
            frames.append(draw_rgb(bg, shape, rgb, x, y, r, rng, noise))
        else:
            frames.append(draw(bg, shape, colours[i], x, y, r, rng, noise))
    if shifted:
        frames = [_blur(f) for f in frames]
    return np.stack(frames)


def generate_hard_dataset(root: str | Path, train_per_class: int = 16, test_per_class: int = 15, seed: int = 0,
                          size: int = 64, num_frames: int = 16) -> Path:
    """``root/{train,val,test}/<class>/<n>.mp4``: train and val hold base classes only (val: 2 per class, same
    domain as train); test holds all 48 classes in the shifted domain. Deterministic under ``seed``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for name, params, base in _families():
        counts = {"train": train_per_class if base else 0, "val": 2 if base else 0, "test": test_per_class}
        for split, n in counts.items():
            for k in range(n):
                frames = render_hard(params, rng, shifted=split == "test", size=size, num_frames=num_frames)
                write_video(root / split / name / f"{k:03d}.mp4", frames)
    return root


def generate_in_domain_test(root: str | Path, test_per_class: int = 15, seed: int = 0, size: int = 64,
                            num_frames: int = 16) -> Path:
    """``root/test/<class>/<n>.mp4`` for all 48 classes in the training domain (no shift), from its own random
    stream (``seed`` + 10000): with the shifted test set, it measures what the shift costs."""
    root = Path(root)
    rng = np.random.default_rng(seed + 10_000)
    for name, params, _ in _families():
        for k in range(test_per_class):
            frames = render_hard(params, rng, shifted=False, size=size, num_frames=num_frames)
            write_video(root / "test" / name / f"{k:03d}.mp4", frames)
    return root
