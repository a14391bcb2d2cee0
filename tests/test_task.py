"""The model, the task around it and the API: zero-shot identity of untrained parts, checkpoints without the
backbone (old layouts too), the notebook calls."""

from pathlib import Path

import pytest
import torch
from lightning import Trainer

from tests.conftest import TINY_CONFIG
from zsvc_pl import BackboneMismatchError, VideoClassificationTask, VideoDataModule, ZeroShotVideoClassifier
from zsvc_pl.model import create_model

LABELS = ["a red circle moving to the left", "a red circle moving to the right", "a blue square moving to the top",
          "a green triangle moving to the bottom"]


def make(tiny_ckpt, **kw):
    """The plain model (tensors in, tensors out)."""
    return create_model(str(TINY_CONFIG), tiny_ckpt, **kw)


def task(tiny_ckpt, **kw) -> VideoClassificationTask:
    return VideoClassificationTask(model_name=str(TINY_CONFIG), pretrained=tiny_ckpt, **kw)


def api(tiny_ckpt, **kw) -> ZeroShotVideoClassifier:
    return ZeroShotVideoClassifier(model_name=str(TINY_CONFIG), pretrained=tiny_ckpt, num_frames=4, **kw)


def test_untrained_learnable_parts_give_the_zero_shot_logits(tiny_ckpt):
    torch.manual_seed(0)
    video = torch.randint(0, 255, (2, 1, 4, 3, 32, 32), dtype=torch.uint8)
    zs = make(tiny_ckpt).eval()
    learned = make(tiny_ckpt, temporal="transformer", ctx_init="a video of", zs_mix=0.2).eval()
    frames = zs.frame_features(video)
    a = zs.eval_logits(frames, LABELS)
    b = learned.eval_logits(frames, LABELS)
    assert torch.allclose(a, b, atol=1e-5)
    temporal_only = make(tiny_ckpt, temporal="transformer", zs_mix=0.0).eval()
    assert torch.equal(temporal_only.eval_logits(frames, LABELS), a)  # bit for bit without the logit mix
    mixed = make(tiny_ckpt, temporal="transformer", zs_mix=0.2).eval()  # the task's default: same up to rounding
    assert torch.allclose(mixed.eval_logits(frames, LABELS), a, atol=1e-5)


def test_probabilities_are_cosine_times_scale_softmaxed(tiny_ckpt):
    clf = make(tiny_ckpt).eval()
    video = torch.randint(0, 255, (1, 2, 4, 3, 32, 32), dtype=torch.uint8)
    frames = clf.frame_features(video)
    text = clf.text_features(LABELS)
    manual = []
    for v in range(2):
        feat = torch.nn.functional.normalize(frames[0, v].mean(0), dim=-1)
        manual.append((clf.logit_scale * feat @ text.T).softmax(-1))
    assert torch.allclose(clf(video, LABELS)[0], torch.stack(manual).mean(0), atol=1e-5)


def test_text_features_are_cached_per_label_set(tiny_ckpt):
    clf = make(tiny_ckpt)
    a = clf.zeroshot_text_features(LABELS)
    assert clf.zeroshot_text_features(LABELS) is a
    assert len(clf._text_cache) == 1
    clf.zeroshot_text_features(LABELS[:2])
    assert len(clf._text_cache) == 2


def test_backbone_stays_frozen_and_in_eval_mode(tiny_ckpt):
    t = task(tiny_ckpt, temporal="transformer", n_ctx=2).train()
    assert not t.model.backbone.training and t.model.temporal.training
    trainable = {n.split(".")[1] for n, p in t.named_parameters() if p.requires_grad}
    assert trainable == {"temporal", "prompt_learner"}


def test_api_classify_and_encode(tiny_ckpt, video_root):
    clf = api(tiny_ckpt)
    videos = sorted(str(p) for p in Path(video_root, "test").rglob("*.mp4"))
    one = clf.classify(videos[0], LABELS)
    assert [label for label, _ in one] != [] and abs(sum(p for _, p in one) - 1) < 1e-5
    assert one == sorted(one, key=lambda x: -x[1])
    many = clf.classify(videos[:3], LABELS, top_k=2)
    assert len(many) == 3 and all(len(r) == 2 for r in many)
    emb = clf.encode_videos(videos[:3])
    assert emb.shape == (3, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert clf.encode_labels(LABELS).shape == (4, 32)
    with pytest.raises(ValueError, match="duplicate"):
        clf.classify(videos[0], ["a", "a"])


def fit_tiny(tiny_ckpt, video_root, tmp_path, **kw):
    dm = VideoDataModule(root=str(video_root), num_frames=4, frame_size=32, batch_size=4, num_workers=0)
    model = task(tiny_ckpt, class_names=dm.class_names, temporal="transformer", n_ctx=2, **kw)
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, accelerator="cpu", logger=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, dm)
    return trainer, model, dm


def test_checkpoint_holds_only_trainable_state_and_backbone_identity(tiny_ckpt, video_root, tmp_path):
    trainer, model, dm = fit_tiny(tiny_ckpt, video_root, tmp_path)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    assert not any(k.startswith("model.backbone.") for k in ckpt["state_dict"])
    assert {k.split(".")[1] for k in ckpt["state_dict"]} == {"temporal", "prompt_learner"}
    assert ckpt["backbone_identity"] == model.backbone_identity and ckpt["zsvc_pl_checkpoint_version"] == 2
    loaded = VideoClassificationTask.load_from_checkpoint(path, weights_only=True)
    assert torch.equal(loaded.model.prompt_learner.ctx, model.model.prompt_learner.ctx)
    assert loaded.class_names == dm.class_names
    clf = ZeroShotVideoClassifier.from_checkpoint(path, num_frames=4)  # a trained run in a notebook
    assert clf.labels == dm.class_names
    assert torch.equal(clf.model.prompt_learner.ctx, model.model.prompt_learner.ctx)
    video = str(next(Path(video_root, "test").rglob("*.mp4")))
    assert clf.classify(video) == clf.classify(video, dm.class_names)  # the run's classes are the default labels


def test_a_version_1_checkpoint_loads_and_an_unidentified_one_is_refused(tiny_ckpt, video_root, tmp_path):
    """zsvc_pl 0.1 stored temporal.*/prompt_learner.* on the module and num_frames/sampling/feature_cache as
    hyper-parameters; such files still load, with the same weights."""
    trainer, model, _ = fit_tiny(tiny_ckpt, video_root, tmp_path)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"] = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    ckpt["hyper_parameters"].update(num_frames=4, sampling="uniform", feature_cache=None)
    del ckpt["zsvc_pl_checkpoint_version"]
    old = tmp_path / "v1.ckpt"
    torch.save(ckpt, old)
    loaded = VideoClassificationTask.load_from_checkpoint(old, weights_only=True)
    assert torch.equal(loaded.model.temporal.proj.weight, model.model.temporal.proj.weight)
    del ckpt["backbone_identity"]
    torch.save(ckpt, old)
    with pytest.raises(BackboneMismatchError, match="does not record the backbone"):
        VideoClassificationTask.load_from_checkpoint(old, weights_only=True)
    VideoClassificationTask.load_from_checkpoint(old, weights_only=True, allow_unidentified_checkpoint=True)
    ckpt["zsvc_pl_checkpoint_version"] = 99
    torch.save(ckpt, old)
    with pytest.raises(RuntimeError, match="version 99 is newer"):
        VideoClassificationTask.load_from_checkpoint(old, weights_only=True)
    ckpt["zsvc_pl_checkpoint_version"] = 2
    ckpt["state_dict"] = {"model." + k: v for k, v in ckpt["state_dict"].items()}
    ckpt["state_dict"]["model.temporal.proj.weight"][0, 0] = float("nan")  # garbled bytes
    torch.save(ckpt, old)
    with pytest.raises(RuntimeError, match="NaN/inf .*model.temporal.proj.weight"):
        VideoClassificationTask.load_from_checkpoint(old, weights_only=True, allow_unidentified_checkpoint=True)


def test_checkpoint_refuses_another_backbone(tiny_ckpt, video_root, tmp_path):
    trainer, _, _ = fit_tiny(tiny_ckpt, video_root, tmp_path)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    other = tmp_path / "other.pt"
    sd = torch.load(tiny_ckpt, weights_only=True)
    sd["logit_scale"] = sd["logit_scale"] + 1
    torch.save(sd, other)
    with pytest.raises(BackboneMismatchError, match="trained on backbone"):
        VideoClassificationTask.load_from_checkpoint(path, pretrained=str(other), weights_only=True)


def test_fit_refuses_when_nothing_is_trainable(tiny_ckpt, video_root, tmp_path):
    dm = VideoDataModule(root=str(video_root), num_frames=4, frame_size=32, num_workers=0)
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="nothing to train"):
        trainer.fit(task(tiny_ckpt, class_names=dm.class_names), dm)


def test_label_edge_cases(tiny_ckpt, video_root):
    clf = api(tiny_ckpt)
    video = str(next(Path(video_root, "test").rglob("*.mp4")))
    with pytest.raises(ValueError, match="empty"):
        clf.classify(video, [])
    with pytest.warns(UserWarning, match="truncated"):
        long = clf.encode_labels(["a person " + "doing something quite long " * 10])
    assert long.shape == (1, 32)
    result = clf.classify(video, ["café au lait", "跑步", "ApplyEyeMakeup"])
    assert sorted(label for label, _ in result) == sorted(["café au lait", "跑步", "ApplyEyeMakeup"])


def test_fit_under_bf16_mixed_and_gradient_accumulation(tiny_ckpt, video_root, tmp_path):
    dm = VideoDataModule(root=str(video_root), num_frames=4, frame_size=32, batch_size=2, num_workers=0)
    model = task(tiny_ckpt, class_names=dm.class_names, temporal="transformer", n_ctx=2)
    before = model.model.temporal.proj.weight.detach().clone()
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, accelerator="cpu", logger=False,
                      precision="bf16-mixed", accumulate_grad_batches=2, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(model, dm)
    assert trainer.global_step == 2  # 4 batches of 2, accumulated in pairs
    assert not torch.equal(model.model.temporal.proj.weight, before)
    assert torch.isfinite(trainer.callback_metrics["train/ce"])
    assert model.model.temporal.proj.weight.dtype == torch.float32  # master weights stay fp32


def test_learned_text_features_are_cached_in_eval_and_dropped_after_training(tiny_ckpt):
    clf = make(tiny_ckpt, n_ctx=2).eval()
    first = clf.text_features(LABELS)
    assert clf.text_features(LABELS) is first  # evaluation: cached
    clf.train()  # a training phase may change the context vectors
    with torch.no_grad():
        clf.prompt_learner.ctx.add_(0.5)
    clf.eval()
    second = clf.text_features(LABELS)
    assert not torch.allclose(first, second)  # the next evaluation sees the updated context vectors
    assert len([k for k in clf._text_cache if k[0] == "learned"]) == 1


def test_api_raises_a_named_error_on_a_bad_file(tiny_ckpt, tmp_path):
    from zsvc_pl import VideoDecodeError

    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    for kw in ({}, {"feature_cache": str(tmp_path / "cache")}):
        clf = api(tiny_ckpt, **kw)
        with pytest.raises(VideoDecodeError, match="empty file") as err:
            clf.encode_videos([str(bad)])
        assert err.value.path == str(bad)
        with pytest.raises(VideoDecodeError, match="file not found"):
            clf.classify(str(tmp_path / "missing.mp4"), LABELS)
