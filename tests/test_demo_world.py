"""The demo world generator and a few steps of the backbone pretraining."""

import numpy as np
import torch

from zsvc_pl.demo.pretrain import caption, make_batch, pretrain, soft_targets, tokenize_with_noise
from zsvc_pl.demo.world import all_classes, base_novel_classes, generate_dataset, motion_label, render_video


def test_direction_is_invisible_to_frame_averages_but_visible_in_order():
    left = render_video("red", "circle", "left", np.random.default_rng(5), 64, 12)
    right = render_video("red", "circle", "right", np.random.default_rng(5), 64, 12)
    red = (left[..., 0] > 180) & (left[..., 1] < 100)
    xs = [np.nonzero(m)[1].mean() for m in red]
    assert all(a > b for a, b in zip(xs, xs[1:]))  # moving to the left: x decreases every frame
    red_r = (right[..., 0] > 180) & (right[..., 1] < 100)
    xs_r = [np.nonzero(m)[1].mean() for m in red_r]
    assert all(a < b for a, b in zip(xs_r, xs_r[1:]))
    assert np.allclose(np.add(xs, xs_r), 64, atol=1.0)  # "right" is "left" mirrored: same set of positions


def test_generation_is_deterministic_and_labelled(tmp_path):
    classes = all_classes()[:2]
    a = generate_dataset(tmp_path / "a", {"test": 1}, classes, seed=3, size=32, num_frames=4)
    b = generate_dataset(tmp_path / "b", {"test": 1}, classes, seed=3, size=32, num_frames=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*.mp4"))
    assert [f.parent.name for f in files] == sorted(motion_label(*c) for c in classes)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    lst = generate_dataset(tmp_path / "l", {"test": 1}, classes, seed=3, size=32, num_frames=4, layout="list")
    assert (lst / "test.txt").read_text().split("\n")[1].endswith(" 1")


def test_base_novel_split_keeps_every_word_in_base():
    base, novel = base_novel_classes()
    assert len(base) == len(novel) == 48 and not set(base) & set(novel)
    def words(labels: list[str]) -> set[str]:
        return {w for label in labels for w in label.split()}

    assert words(novel) <= words(base)
    assert {label.split(" moving")[0] for label in base}.isdisjoint({label.split(" moving")[0] for label in novel})


def test_partial_captions_get_soft_targets():
    rng = np.random.default_rng(0)
    assert caption("red", "circle", "left", (1, 1, 0), rng).endswith("red circle")
    attrs = torch.tensor([[0, 0, 0], [0, 0, 1], [1, 1, 1]])
    masks = torch.tensor([[1, 1, 1], [0, 0, 1], [1, 1, 0]], dtype=torch.bool)
    # caption 1 names only position 1: true of image 1 and image 2; caption 2 names colour+shape 1,1: image 2 only
    assert soft_targets(attrs, masks).tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_noise_tokens_are_inserted_before_eot():
    import open_clip

    tok = open_clip.get_tokenizer("ViT-B-32")
    clean = tok(["a red circle"])
    noisy = tokenize_with_noise(tok, ["a red circle"], np.random.default_rng(0), p=1.0)
    assert int((noisy != 0).sum()) == int((clean != 0).sum()) + 1
    assert noisy[0].argmax() == clean[0].argmax() + 1  # EOT moved one place right


def test_a_few_pretraining_steps_lower_the_loss_and_save_weights(tmp_path):
    from safetensors.torch import load_file

    imgs, texts, attrs, masks = make_batch(np.random.default_rng(0), extra=0, frame_size=64)
    assert imgs.shape == (96, 64, 64, 3) and len(texts) == 96
    report = pretrain(steps=6, out=tmp_path / "w.safetensors", log_every=100)
    assert report["last_loss"] < report["first_loss"] - 0.2
    assert report["megabytes"] < 20
    sd = load_file(tmp_path / "w.safetensors")
    assert sd["token_embedding.weight"].dtype == torch.float16
    assert set(report) >= {"colour_shape_top1", "position_top1", "direction_prompt_cosine_max"}


def test_pretraining_is_reproducible_to_the_byte(tmp_path):
    pretrain(steps=2, out=tmp_path / "a.safetensors", log_every=100)
    pretrain(steps=2, out=tmp_path / "b.safetensors", log_every=100)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
