"""Where in the video, and the pictures: spans are right on a video whose content is known, figures are files."""


import numpy as np
import pytest

from zsvc_pl.train import figures as plots
from zsvc_pl.timeline import Timeline


def make_timeline(scores) -> Timeline:
    scores = np.asarray(scores, dtype=float)
    return Timeline("x/v.mp4", ["a", "b"], np.arange(len(scores)) * 0.5, scores,
                    np.zeros((len(scores), 8, 8, 3), dtype=np.uint8))


def test_span_is_the_stretch_around_the_peak():
    tl = make_timeline([[0.1, 0.9], [0.6, 0.4], [0.8, 0.2], [0.7, 0.3], [0.2, 0.8], [0.9, 0.1]])
    assert tl.peak("a") == (2.5, 0.9)
    assert tl.span("a", 0.5) == (2.5, 2.5)
    assert tl.span("a", 0.15) == (0.5, 2.5)
    assert tl.span("b", 0.95) is None
    assert make_timeline([[0.6, 0.4], [0.7, 0.3], [0.65, 0.35]]).span("a", 0.5) == (0.0, 1.0)


def test_explain_on_a_known_video(demo_model, tmp_path):
    from zsvc_pl.demo.world import generate_dataset

    root = generate_dataset(tmp_path / "v", {"test": 1}, [("red", "circle", "left")], seed=2)
    video = next(root.rglob("*.mp4"))
    labels = ["a red circle on the left", "a red circle on the right", "a blue square at the top"]
    tl, fig = demo_model.explain(video, labels, num_frames=12, save_to=tmp_path / "explain.png")
    assert (tmp_path / "explain.png").stat().st_size > 10_000
    # moving to the left: on the right first, on the left last
    assert tl.scores[0].argmax() == 1 and tl.scores[-1].argmax() == 0
    start, end = tl.span("a red circle on the left", 0.5)
    assert start > tl.times[0] and end == tl.times[-1]


@pytest.mark.parametrize("n", [4, 60])
def test_result_figures_are_written(tmp_path, n):
    rng = np.random.default_rng(0)
    conf = np.diag(rng.integers(1, 5, n)) + rng.integers(0, 2, (n, n))
    labels = [f"class number {i}" for i in range(n)]
    for name, fig in {"c": plots.confusion_figure(conf, labels),
                      "p": plots.per_class_figure(conf, labels, base=list(range(n // 2))),
                      "b": plots.base_novel_figure({"base_top1": 0.9, "novel_top1": 0.7, "hm": 0.79})}.items():
        path = plots.save(fig, tmp_path / f"{name}.png")
        assert path.stat().st_size > 5_000


def test_per_class_bars_show_zero_accuracies():
    conf = np.array([[0, 3], [2, 0]])  # every video wrong: both accuracies 0
    fig = plots.per_class_figure(conf, ["a", "b"])
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["0 %", "0 %"]  # a visible label where a bar has no length
