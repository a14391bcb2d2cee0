"""The demo world: short videos of coloured shapes moving across noisy backgrounds.

Colour and shape are visible in any single frame; the direction of motion is not (the frames of
"moving to the left" are those of "moving to the right" in reverse order), so mean pooling over frames
cannot tell directions apart and a temporal model can. Everything is deterministic under a seed.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (30, 185, 50),
    "blue": (40, 70, 235),
    "yellow": (240, 225, 30),
    "purple": (155, 50, 210),
    "orange": (250, 135, 20),
}
SHAPES = ("circle", "square", "triangle", "cross")
DIRECTIONS = ("left", "right", "top", "bottom")
# Where an object sits in one frame, in the words that also name the direction of motion.
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}


def static_label(colour: str, shape: str) -> str:
    """Label of an object: ``a red circle``."""
    return f"a {colour} {shape}"


def motion_label(colour: str, shape: str, direction: str) -> str:
    """Label of a video class: ``a red circle moving to the left``."""
    return f"a {colour} {shape} moving to the {direction}"


def all_classes(colours=tuple(COLOURS), shapes=SHAPES, directions=DIRECTIONS) -> list[tuple[str, str, str]]:
    """Every (colour, shape, direction) combination, in a fixed order."""
    return list(itertools.product(colours, shapes, directions))


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random low-saturation textured background, float ``[H, W, 3]`` in 0..255."""
    base = rng.uniform(40, 190)
    tint = rng.normal(0, 12, 3)
    coarse = rng.normal(0, rng.uniform(8, 30), (4, 4, 1))
    coarse = np.kron(coarse, np.ones((size // 4 + 1, size // 4 + 1, 1)))[:size, :size]
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    gradient = rng.uniform(-30, 30) * (np.cos(angle) * xx + np.sin(angle) * yy)
    texture = rng.normal(0, rng.uniform(2, 8), (size, size, 1))
    return np.clip(base + tint + coarse + gradient[..., None] + texture, 0, 255)


def shape_mask(shape: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean mask of a shape centred at pixel ``(cx, cy)`` with radius ``r`` pixels."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "triangle":
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == "cross":
        arm = r * 0.33
        return ((np.abs(dx) <= r) & (np.abs(dy) <= arm)) | ((np.abs(dy) <= r) & (np.abs(dx) <= arm))
    if shape == "diamond":  # the square turned by 45 degrees, of the same area (the harder world only)
        return np.abs(dx) + np.abs(dy) <= r * 1.2
    if shape == "ring":  # the circle with a hole (the harder world only)
        return ((r * 0.5) ** 2 <= dx**2 + dy**2) & (dx**2 + dy**2 <= r**2)
    raise ValueError(f"unknown shape {shape!r}")


def draw(bg: np.ndarray, shape: str, colour: str, cx: float, cy: float, r: float,
         rng: np.random.Generator, noise: float) -> np.ndarray:
    """One uint8 frame: the shape (with a slightly jittered colour) over the background, plus noise."""
    rgb = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 10, 3), 0, 255)
    return draw_rgb(bg, shape, rgb, cx, cy, r, rng, noise)


def draw_rgb(bg: np.ndarray, shape: str, rgb: np.ndarray, cx: float, cy: float, r: float,
             rng: np.random.Generator, noise: float) -> np.ndarray:
    """One uint8 frame: the shape in exactly ``rgb`` over the background, plus noise."""
    img = bg.copy()
    img[shape_mask(shape, bg.shape[0], cx, cy, r)] = rgb
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def position_centre(position: str, rng: np.random.Generator, size: int) -> tuple[float, float]:
    """A random object centre inside the region that ``position`` names."""
    near, far = rng.uniform(0.14, 0.34), rng.uniform(0.3, 0.7)
    x, y = {"left": (near, far), "right": (1 - near, far), "top": (far, near), "bottom": (far, 1 - near)}[position]
    return x * size, y * size


def sample_frame(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, str, str, str]:
    """One still frame for pretraining: (image, colour, shape, position)."""
    colour = str(rng.choice(list(COLOURS)))
    shape = str(rng.choice(SHAPES))
    position = str(rng.choice(DIRECTIONS))
    return render_still(colour, shape, position, rng, size), colour, shape, position


def render_still(colour: str, shape: str, position: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A single uint8 frame of ``colour shape`` at ``position``, with random size and background."""
    cx, cy = position_centre(position, rng, size)
    r = rng.uniform(0.09, 0.16) * size
    return draw(background(rng, size), shape, colour, cx, cy, r, rng, rng.uniform(2, 10))


def render_video(colour: str, shape: str, direction: str, rng: np.random.Generator, size: int = 96,
                 num_frames: int = 16, event: float = 1.0) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``: the shape crossing the frame toward ``direction`` at a random speed.

    With ``event < 1`` the crossing takes only that fraction of the frames, at a random moment; the other
    frames show the empty background (a long video with one short event).
    """
    start = rng.uniform(0.62, 0.86)
    end = rng.uniform(0.14, 0.38)
    across = rng.uniform(0.3, 0.7)
    r = rng.uniform(0.09, 0.16) * size
    bg = background(rng, size)
    noise = rng.uniform(2, 10)
    active = max(2, int(round(event * num_frames)))
    first = int(rng.integers(0, num_frames - active + 1))
    frames = []
    for i in range(num_frames):
        if not first <= i < first + active:
            frames.append(np.clip(bg + rng.normal(0, noise, bg.shape), 0, 255).astype(np.uint8))
            continue
        t = (i - first) / (active - 1)
        along = start + (end - start) * t  # from the far side toward the named side
        x, y = {"left": (along, across), "right": (1 - along, across),
                "top": (across, along), "bottom": (across, 1 - along)}[direction]
        frames.append(draw(bg, shape, colour, x * size, y * size, r, rng, noise))
    return np.stack(frames)


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV 4:2:0 planes stacked as FFmpeg's ``yuv420p`` array ``[H * 3 / 2, W]``.

    Done here rather than by FFmpeg's swscale, whose output was seen to vary from run to run.
    """
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    h, w = y.shape

    def half(c: np.ndarray) -> np.ndarray:
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [y, half(u), half(v)]
    flat = np.concatenate([p.round().clip(0, 255).astype(np.uint8).reshape(-1) for p in planes])
    return flat.reshape(h * 3 // 2, w)


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8) -> None:
    """Write uint8 ``[T, H, W, 3]`` frames (even H and W) as an H.264 MP4 with PyAV; byte-identical across runs."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # one thread and a constant quantiser: x264's threads and its CRF rate control (float maths seen to vary
        # once PyTorch had run in the process) made the bytes differ from run to run
        stream.codec_context.thread_count = 1
        stream.options = {"qp": "16", "preset": "veryfast", "x264-params": "threads=1:lookahead-threads=1"}
        for frame in frames:
            yuv = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
            for packet in stream.encode(yuv):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_event_stream(path: str | Path, events: list[tuple[str, str, float, float]] | None = None,
                       seconds: int = 6, fps: int = 8, size: int = 64, seed: int = 0) -> Path:
    """An MPEG-TS stream (readable from a pipe) of a textured background on which each ``(colour, shape, start,
    end)`` object shows, still, from ``start`` to ``end`` seconds. Default: a red circle 1.0-2.5 s, a blue
    square 3.5-5.0 s."""
    import av

    events = events if events is not None else [("red", "circle", 1.0, 2.5), ("blue", "square", 3.5, 5.0)]
    rng = np.random.default_rng(seed)
    bg = background(rng, size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "16", "preset": "veryfast"}
        for i in range(seconds * fps):
            on = [(c, s) for c, s, start, end in events if start <= i / fps < end]
            img = (draw(bg, on[0][1], on[0][0], size / 2, size / 2, size * 0.19, rng, 3) if on
                   else np.clip(bg + rng.normal(0, 3, bg.shape), 0, 255).astype(np.uint8))
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb_to_yuv420p(img), format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def generate_dataset(root: str | Path, videos_per_class: dict[str, int] | None = None,
                     classes: list[tuple[str, str, str]] | None = None, seed: int = 0, size: int = 96,
                     num_frames: int = 16, fps: int = 8, layout: str = "folder", labels: str = "motion",
                     event: float = 1.0) -> Path:
    """Write a demo dataset under ``root`` and return it.

    ``layout="folder"`` writes ``root/<split>/<class label>/<n>.mp4`` (what ``VideoDataModule`` reads with
    ``format: folder``); ``layout="list"`` writes ``root/videos/...`` plus ``{split}.txt`` annotation lists
    and ``labels.csv``. ``videos_per_class`` maps split name to count (default: train 8, val 2, test 4).
    ``labels="static"`` names folders by colour and shape only (``a red circle``), pooling the directions.
    ``event < 1`` makes each object cross the frame in only that fraction of the video (see ``render_video``).
    """
    root = Path(root)
    videos_per_class = videos_per_class or {"train": 8, "val": 2, "test": 4}
    classes = classes or all_classes()
    if labels not in ("motion", "static"):
        raise ValueError(f"labels must be 'motion' or 'static', got {labels!r}")
    names = [motion_label(*c) if labels == "motion" else static_label(*c[:2]) for c in classes]
    unique = list(dict.fromkeys(names))
    for s_idx, (split, count) in enumerate(videos_per_class.items()):
        lines = []
        for c_idx, (colour, shape, direction) in enumerate(classes):
            for n in range(count):
                rng = np.random.default_rng([seed, s_idx, c_idx, n])
                frames = render_video(colour, shape, direction, rng, size, num_frames, event)
                if layout == "folder":
                    rel = Path(split) / names[c_idx] / f"{direction}_{n:03d}.mp4"
                else:
                    rel = Path("videos") / split / f"{c_idx:03d}_{n:03d}.mp4"
                    lines.append(f"{rel} {unique.index(names[c_idx])}")
                write_video(root / rel, frames, fps)
        if layout == "list":
            (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    if layout == "list":
        (root / "labels.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(unique)))
    return root


def base_novel_classes(colours=tuple(COLOURS), shapes=SHAPES, directions=DIRECTIONS) -> tuple[list[str], list[str]]:
    """Split the motion classes by colour-shape in a checkerboard: base holds half the colour-shape pairs with
    all four directions, so every colour, shape and direction word appears among base classes, and each novel
    class is an unseen combination of seen words."""
    base, novel = [], []
    for i, colour in enumerate(colours):
        for j, shape in enumerate(shapes):
            group = base if (i + j) % 2 == 0 else novel
            group += [motion_label(colour, shape, d) for d in directions]
    return base, novel
