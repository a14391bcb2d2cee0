"""The harder world's construction (parts, shift, determinism) and vision prompts: they learn, train only
themselves, travel in checkpoints and rule out cached features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zsvc_pl.demo.hard_world import (
    CORNERS,
    _blur,
    _clutter,
    _families,
    generate_hard_dataset,
    generate_in_domain_test,
    hard_base_novel,
    hard_classes,
    render_hard,
)
from zsvc_pl.model.backbone import DEMO_WEIGHTS
from zsvc_pl.model.video_text import create_model
from zsvc_pl.train.checkpoints import save_state

needs_demo = pytest.mark.skipif(not DEMO_WEIGHTS.is_file(), reason="demo weights not built")


def test_every_novel_class_combines_parts_seen_in_base_classes():
    fam = _families()
    assert len(hard_classes()) == len(set(hard_classes())) == 48
    base, novel = hard_base_novel()
    assert len(base) == len(novel) == 24
    seen = {part for _, p, b in fam if b for part in p.items()}
    for name, params, is_base in fam:
        if not is_base:  # each part (kind, directions, speed, colours, place, tone) is in some base class
            assert set(params.items()) <= seen, name
            assert not any(p == params for _, p, b in fam if b)  # but not this combination
    families = [p["kind"] for _, p, _ in fam]
    assert {k: families.count(k) for k in set(families)} == {"two_phase": 8, "speed": 8, "change": 8,
                                                              "appears": 4, "vanishes": 4, "shade": 8, "outline": 8}


def test_time_order_alone_separates_reversed_classes_and_the_test_domain_is_shifted():
    fam = {name: p for name, p, _ in _families()}
    a = render_hard(fam["turns from red to blue"], np.random.default_rng(3), shifted=False)
    b = render_hard(fam["turns from blue to red"], np.random.default_rng(3), shifted=False)
    # the same scene; the object's colour flips at the same frame, in the other order
    mask = np.any(a != b, axis=(0, 3))
    assert mask.any() and np.all(a[:3][:, mask].mean(axis=(0, 1))[:3] != b[:3][:, mask].mean(axis=(0, 1))[:3])
    rng = np.random.default_rng(0)
    train_bg = [np.median(render_hard(fam["appears on the left"], rng, False)[0]) for _ in range(20)]
    test_bg = [np.median(render_hard(fam["appears on the left"], rng, True)[0]) for _ in range(20)]
    assert min(train_bg) > 45 and max(train_bg) < 205  # first frame: background only (the object appears later)
    assert all(m < 45 or m > 195 for m in test_bg)  # (and a small still object in a corner: clutter)


def test_the_test_domain_adds_a_still_object_of_another_colour_in_a_corner_and_blur():
    from zsvc_pl.demo.world import COLOURS

    bg = np.full((64, 64, 3), 100.0)
    for seed in range(8):
        out = _clutter(bg, {"red", "blue", None}, 6.0, np.random.default_rng(seed))
        ys, xs = np.nonzero(np.any(out != bg, axis=-1))
        corner = min(CORNERS, key=lambda c: (c[0] * 64 - xs.mean()) ** 2 + (c[1] * 64 - ys.mean()) ** 2)
        assert np.abs(xs + 0.5 - corner[0] * 64).max() <= 6 and np.abs(ys + 0.5 - corner[1] * 64).max() <= 6
        colour = tuple(int(v) for v in out[ys[0], xs[0]])
        assert colour in [COLOURS[c] for c in COLOURS if c not in ("red", "blue")]
    impulse = np.zeros((9, 9, 3), dtype=np.uint8)
    impulse[4, 4] = 255
    blurred = _blur(impulse)[..., 0]  # [1, 4, 6, 4, 1] / 16 along each axis
    assert blurred[4, 4] == 36 and blurred[4, 6] == 6 and blurred[2, 2] == 1 and blurred[4, 7] == 0


def test_generation_is_deterministic(tmp_path):
    one = generate_hard_dataset(tmp_path / "a", train_per_class=1, test_per_class=1, seed=5, num_frames=8)
    two = generate_hard_dataset(tmp_path / "b", train_per_class=1, test_per_class=1, seed=5, num_frames=8)
    files = sorted(p.relative_to(one) for p in one.rglob("*.mp4"))
    assert len(files) == 24 * 3 + 48  # train and val: base classes; test: all 48
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
    unshifted = generate_in_domain_test(tmp_path / "c", test_per_class=1, seed=5, num_frames=8)
    assert sorted(p.parent.name for p in unshifted.rglob("*.mp4")) == sorted(hard_classes())
    first = Path("test") / hard_classes()[0] / "000.mp4"  # its own stream, unshifted: not the shifted video
    assert (unshifted / first).read_bytes() != (one / first).read_bytes()


@needs_demo
def test_vision_prompts_learn_what_the_frozen_tower_cannot_and_train_only_themselves():
    """Two invented names the text tower never read, for red and blue frames: frozen features cannot place them,
    learned vision prompts move the frames' features to the names' features."""
    from zsvc_pl.demo.world import render_still

    torch.manual_seed(0)
    model = create_model("demo", "demo", vision_prompts=4, templates="none")
    frozen = create_model("demo", "demo", templates="none")
    rng = np.random.default_rng(0)
    colours = ["red", "blue"] * 8
    frames = torch.from_numpy(np.stack([render_still(c, "circle", "left", rng) for c in colours]))
    video = frames.permute(0, 3, 1, 2)[:, None, None]  # [B, V=1, T=1, 3, 64, 64]
    target = torch.tensor([0, 1] * 8)
    names = ["zorp", "quix"]

    def accuracy(m) -> float:
        with torch.no_grad():
            return float((m.video_logits(m.frame_features(video), m.zeroshot_text_features(names))[:, 0]
                          .argmax(-1) == target).float().mean())

    before = accuracy(frozen)
    assert before == pytest.approx(accuracy(model.eval()), abs=0.13)  # small tokens change little at first
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["vision_prompts.tokens"]
    optimizer = torch.optim.AdamW([model.vision_prompts.tokens], lr=0.05)
    model.train()
    text = model.zeroshot_text_features(names)
    for _ in range(25):
        loss = F.cross_entropy(model.video_logits(model.frame_features(video), text)[:, 0], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert before <= 0.75 and accuracy(model.eval()) == 1.0
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    save_state(checkpoint, model.identity)
    assert list(checkpoint["state_dict"]) == ["model.vision_prompts.tokens"]  # the frozen tower is not saved
    assert model.trains_on_pixels and model.learnable


def test_vision_prompts_refuse_cached_training_and_token_merging(tiny_ckpt, video_root, tmp_path, capsys):
    from tests.conftest import TINY_CONFIG
    from zsvc_pl.cli import main

    with pytest.raises(ValueError, match="cannot be combined with token merging"):
        create_model(str(TINY_CONFIG), tiny_ckpt, vision_prompts=2, token_merging=2)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.model_name", str(TINY_CONFIG), "--model.pretrained", tiny_ckpt,
              "--model.vision_prompts", "2", "--data.root", str(video_root), "--data.frame_size", "32",
              "--data.num_frames", "2", "--data.num_workers", "0", "--data.feature_cache", str(tmp_path / "c"),
              "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_epochs", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--data.feature_cache cannot train this model: a trainable part acts on the pixels" in err


def test_the_runner_pairs_variants_by_seed_with_student_intervals(tmp_path, capsys):
    import json

    from zsvc_pl.demo import hard_base2novel as runner

    mean, half = runner.interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 / 3 ** 0.5)
    assert runner.t_975(14) == 2.145 and runner.t_975(40) == pytest.approx(2.021, abs=0.003)
    assert runner.t_975(120) == pytest.approx(1.980, abs=0.001)
    run = lambda b, n, h: {"base_top1": b, "novel_top1": n, "hm": h, "fit_seconds": 1.0}  # noqa: E731
    results = {"0": {"zero-shot": run(0.10, 0.10, 0.10), "CoOp": run(0.20, 0.12, 0.15)},
               "1": {"zero-shot": run(0.30, 0.30, 0.30), "CoOp": run(0.40, 0.29, 0.36)}}
    rows = runner.paired_rows(results)
    # HM: +5 and +6 points, paired (the seeds' own levels 10 and 30 cancel); t(1) = 12.706 over sd 0.707 / sqrt 2
    assert rows[0] == "| zero-shot | 20.0 +- 127.1 | - | - | - | - | - |"
    assert rows[1] == ("| CoOp | 25.5 +- 133.4 | +5.5 [-0.9, +11.9] | - | +10.0 [+10.0, +10.0] * | "
                       "+0.5 [-18.6, +19.6] | -1.0 (1 of 2 below) |")
    results["2"] = {"zero-shot": run(0.20, 0.20, 0.20)}  # a variant not run on every seed counts its own seeds
    (tmp_path / "results.json").write_text(json.dumps(results))
    runner.main(["--out", str(tmp_path), "--report"])  # prints from results.json, fits nothing
    out = capsys.readouterr().out
    assert "| CoOp | 25.5 +- 133.4 | +5.5 [-0.9, +11.9]" in out
    assert "| zero-shot | 3 | 20.0 +- 10.0 | 20.0 +- 10.0 | 20.0 +- 10.0 | 1 s |" in out
    assert "| CoOp | 2 | 30.0 +- 14.1 | 20.5 +- 12.0 | 25.5 +- 14.8 | 1 s |" in out
    with pytest.raises(SystemExit) as exit_info:  # a folder without runs is a mistake, not empty tables
        runner.main(["--out", str(tmp_path / "elsewhere"), "--report"])
    assert exit_info.value.code == 2 and "no " + str(tmp_path / "elsewhere" / "results.json") in capsys.readouterr().err
    runner.main(["--out", str(tmp_path), "--seeds", "0", "1", "--variants", "zero-shot", "CoOp"])  # all in
    assert not (tmp_path / "seed0").exists()  # results.json: nothing generated or refitted
    interrupted = tmp_path / "seed2" / "CoOp" / "checkpoints"
    interrupted.mkdir(parents=True)
    (interrupted / "last.ckpt").write_bytes(b"")  # a fit that ended before the runner recorded its result
    with pytest.raises(SystemExit) as exit_info:  # before: refitted beside it; now the fit would be refused
        runner.main(["--out", str(tmp_path), "--seeds", "2", "--variants", "zero-shot", "CoOp"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"{interrupted.parent} holds the checkpoints of a fit without a result" in err
