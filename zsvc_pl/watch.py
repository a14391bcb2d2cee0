"""Watch a live source: score sliding windows against labels and write one event per stretch a label holds.

    python -m zsvc_pl watch SOURCE --labels labels.txt --events events.jsonl --threshold 0.6 [--window 2 --hop 0.5]

SOURCE is ``-`` (stdin, e.g. ``ffmpeg ... -f mpegts - | python -m zsvc_pl watch - ...``), a file (read once),
an RTSP/HTTP/UDP/SRT URL written with its scheme (reopened when it drops) or a camera (``/dev/video0``). Frames
are kept at ``frames / window`` per second of stream time and each is encoded once, as it arrives; every ``hop``
seconds the last ``frames`` frames form a window, scored like a video. A label's score is its similarity to the
window (cosine with its words, plus the example term for labels by example: the open-set score of
``zsvc_pl.model.abstention``, so ``test/abstain_at_95`` from a labelled sample is a good threshold). An event
opens when a label's score reaches ``threshold`` and closes when it falls below ``threshold - hysteresis``;
its start and end are the centres of its first and last windows. Each event is one JSON line, written as it
closes: ``{"label", "start", "end", "peak"}`` (seconds of stream time). On stderr: windows that took longer than
``hop`` to score, frames skipped to catch up with a live source, and a summary (latency per window against
real time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

import torch

from zsvc_pl.data.stream import LiveFrames

if TYPE_CHECKING:
    from zsvc_pl.api import ZeroShotVideoClassifier


@dataclass
class EventTracker:
    """Per-label hysteresis: one event per stretch of windows where a label holds."""

    labels: list[str]
    threshold: float
    hysteresis: float = 0.05
    open: dict[int, dict] = field(default_factory=dict)

    def update(self, t: float, scores: list[float]) -> list[dict]:
        """Scores of the window centred at ``t``; returns the events that closed."""
        closed = []
        for c, s in enumerate(scores):
            event = self.open.get(c)
            if event is None and s >= self.threshold:
                self.open[c] = {"label": self.labels[c], "start": t, "end": t, "peak": s}
            elif event is not None and s >= self.threshold - self.hysteresis:
                event["end"], event["peak"] = t, max(event["peak"], s)
            elif event is not None:
                closed.append(self.open.pop(c))
        return closed

    def close_all(self) -> list[dict]:
        closed, self.open = list(self.open.values()), {}
        return closed


def check_settings(window: float, hop: float, frames: int, reconnects: int, hysteresis: float) -> None:
    """Refuse window settings that cannot score anything (a zero window divides by zero; zero frames never fill)."""
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be above 0 seconds, got {window} and {hop}")
    if frames < 1:
        raise ValueError(f"frames per window must be at least 1, got {frames}")
    if reconnects < 0 or hysteresis < 0:
        raise ValueError(f"reconnects and hysteresis must be 0 or more, got {reconnects} and {hysteresis}")


@torch.inference_mode()
def watch(clf: ZeroShotVideoClassifier, source: str, labels, events: IO[str], threshold: float,
          window: float = 2.0, hop: float = 0.5, frames: int = 8, hysteresis: float = 0.05,
          reconnects: int = 3, log: IO[str] = sys.stderr) -> dict:
    """Score ``source`` live and write events to ``events``; returns a summary of the run."""
    check_settings(window, hop, frames, reconnects, hysteresis)
    label_set, examples = clf.label_set(labels)
    model, prompts = clf.model, label_set.prompts
    tracker = EventTracker(label_set.names, threshold, hysteresis)
    stream = LiveFrames(source, frames / window, clf.frame_size, reconnects=reconnects)
    recent: deque = deque(maxlen=frames)  # (seconds, frame feature [D]): all the memory a window needs
    latencies, behind, next_window, start = [], 0, None, time.perf_counter()

    def emit(done: list[dict]) -> None:
        for e in done:
            events.write(json.dumps({**e, "start": round(e["start"], 3), "end": round(e["end"], 3),
                                     "peak": round(e["peak"], 4)}) + "\n")
            events.flush()

    for t, frame in stream:
        tic = time.perf_counter()
        recent.append((t, model.frame_features(frame[None, None, None].to(model.device))[0, 0, 0]))
        next_window = t if next_window is None else next_window
        if len(recent) < frames or t + 1e-6 < next_window:
            continue
        feats = torch.stack([f for _, f in recent])[None, None]  # [1, 1, T, D]
        sims = (model.eval_logits(feats, prompts, examples) / model.logit_scale)[0, 0].tolist()
        emit(tracker.update((recent[0][0] + recent[-1][0]) / 2, sims))
        latencies.append(time.perf_counter() - tic)
        if latencies[-1] > hop:
            behind += 1
            print(f"watch: window at {t:.2f} s took {latencies[-1]:.2f} s, longer than the hop ({hop:g} s): "
                  "cannot keep up with a live source", file=log)
        next_window += hop
    emit(tracker.close_all())
    summary = {"windows": len(latencies), "stream_seconds": round(recent[-1][0], 3) if recent else 0.0,
               "wall_seconds": round(time.perf_counter() - start, 3),
               "latency_mean_s": round(sum(latencies) / len(latencies), 4) if latencies else None,
               "latency_max_s": round(max(latencies), 4) if latencies else None, "windows_behind": behind,
               "frames_skipped": len(stream.skipped), "skipped_at": [round(t, 3) for t in stream.skipped[:20]],
               "timestamp_restarts": len(stream.restarts), "restarts_at": stream.restarts[:20],
               "source_error": stream.error}
    print("watch: " + json.dumps(summary), file=log)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m zsvc_pl watch``; returns 0, or exits 2 with one line on a mistake."""
    from zsvc_pl.api import ZeroShotVideoClassifier

    parser = argparse.ArgumentParser(prog="python -m zsvc_pl watch", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="'-' for stdin, a file, a URL with its scheme, or /dev/videoN")
    parser.add_argument("--labels", required=True, help="label file, label set (YAML) or folder of examples")
    parser.add_argument("--events", required=True, help="JSON Lines output, one event per line")
    parser.add_argument("--threshold", type=float, required=True, help="similarity at which a label holds")
    parser.add_argument("--hysteresis", type=float, default=0.05)
    parser.add_argument("--window", type=float, default=2.0, help="seconds per scored window")
    parser.add_argument("--hop", type=float, default=0.5, help="seconds between windows")
    parser.add_argument("--frames", type=int, default=8, help="frames per window")
    parser.add_argument("--reconnects", type=int, default=3, help="reopen a URL or camera that drops")
    parser.add_argument("--model-name", default="ViT-B-32")
    parser.add_argument("--pretrained", default="openai")
    parser.add_argument("--frame-size", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        check_settings(args.window, args.hop, args.frames, args.reconnects, args.hysteresis)  # before any file
        if Path(args.events).is_dir():
            raise ValueError(f"--events {args.events} is a folder: name a JSON Lines file to append events to")
        clf = ZeroShotVideoClassifier(args.model_name, args.pretrained, frame_size=args.frame_size, num_workers=0)
        try:
            Path(args.events).parent.mkdir(parents=True, exist_ok=True)
            out = open(args.events, "a", encoding="utf-8")
        except OSError as e:
            raise ValueError(f"cannot write --events {args.events} ({e.strerror})") from None
        with out:
            summary = watch(clf, args.source, args.labels, out, args.threshold, args.window, args.hop,
                            args.frames, args.hysteresis, args.reconnects)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        parser.exit(2, f"zsvc_pl watch: error: {str(e).splitlines()[0]}\n")
    if summary["windows"] == 0 and summary["source_error"]:
        parser.exit(2, f"zsvc_pl watch: error: {args.source}: {summary['source_error']}\n")
    return 0
