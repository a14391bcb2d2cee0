"""Labels by example (training-free cache model) and "none of these" (open-set threshold), on demo videos."""

import csv
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from zsvc_pl import ZeroShotVideoClassifier
from zsvc_pl.cli import main as cli_main
from zsvc_pl.data.label_sets import LabelSet, read_label_set
from zsvc_pl.demo.world import COLOURS, SHAPES, generate_dataset, static_label
from zsvc_pl.labels import LabelError
from zsvc_pl.model.abstention import auroc, fit_threshold
from zsvc_pl.model.examples import ExampleMemory

INVENTED = ["blicket", "dax", "wug", "toma", "fep", "zorp", "kiki", "bouba", "gazzer", "mib", "tupa", "lorp",
            "quell", "vash", "nib", "sprock", "glim", "torv", "plem", "yorn", "brask", "flin", "drub", "snee"]
PAIRS = [(c, s) for c in COLOURS for s in SHAPES]  # 24 labels


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Every colour-shape pair: train/ 4 clips (one per direction, the examples), test/ 4 clips."""
    return generate_dataset(tmp_path_factory.mktemp("examples"), {"train": 1, "test": 1}, seed=11, size=64,
                            num_frames=8, labels="static")


@pytest.fixture(scope="module")
def clf(tmp_path_factory) -> ZeroShotVideoClassifier:
    from zsvc_pl.model.backbone import DEMO_WEIGHTS

    if not DEMO_WEIGHTS.is_file():
        pytest.skip("demo weights not built")
    return ZeroShotVideoClassifier("demo", "demo", frame_size=64, num_workers=0,
                                   feature_cache=tmp_path_factory.mktemp("cache"))


def clips(world: Path, split: str, colour: str, shape: str) -> list[str]:
    return sorted(str(p) for p in (world / split / static_label(colour, shape)).glob("*.mp4"))


def test_example_memory_scores_are_mean_affinities():
    e = torch.eye(3)
    memory = ExampleMemory(e[[0, 1, 2]], [0, 0, 2], num_labels=3, weight=0.5, sharpness=2.0)
    video = e[[0]]
    # label 0: examples e0 (cos 1) and e1 (cos 0); label 1: no examples; label 2: e2 (cos 0)
    expected = torch.tensor([[(1 + math.exp(-2)) / 2, 0.0, math.exp(-2)]])
    assert torch.allclose(memory.scores(video), expected)
    assert torch.allclose(memory.logits(video), 0.5 * expected)
    with pytest.raises(ValueError, match="index the 3 labels"):
        ExampleMemory(e, [0, 1, 3], num_labels=3)


def test_label_given_by_several_texts_is_their_mean_feature(demo_model):
    model = demo_model.model
    both = model.text_features([("a red circle", "a blue square"), "a green cross"])
    parts = model.text_features(["a red circle", "a blue square", "a green cross"])
    assert torch.allclose(both[0], F.normalize(parts[:2].mean(0), dim=-1), atol=1e-6)
    assert torch.allclose(both[1], parts[2], atol=1e-6)


def test_label_sets_from_yaml_folder_and_plain_file(world, tmp_path):
    clip = clips(world, "train", "red", "circle")[0]
    spec = tmp_path / "labels.yaml"
    mapping = {"a blicket": [clip], "a dog": ["a dog", "a puppy"], "a cat": None}
    spec.write_text(yaml.safe_dump(mapping, sort_keys=False))
    ls = read_label_set(spec)
    assert ls.names == ["a blicket", "a dog", "a cat"]
    assert ls.texts == [["a blicket"], ["a dog", "a puppy"], ["a cat"]]
    assert ls.clips == [[clip], [], []] and ls.prompts == ["a blicket", ("a dog", "a puppy"), "a cat"]
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "x.mp4").write_bytes(Path(clip).read_bytes())
    (tmp_path / "rel.yaml").write_text("a wug: rel/x.mp4\n")
    assert read_label_set(tmp_path / "rel.yaml").clips == [[str(tmp_path / "rel" / "x.mp4")]]
    (tmp_path / "bad.yaml").write_text("a wug: [missing.mp4]\n")
    with pytest.raises(LabelError, match="example clip of 'a wug' not found"):
        read_label_set(tmp_path / "bad.yaml")
    folder = read_label_set(world / "train")
    assert len(folder.names) == 24 and all(len(c) == 4 for c in folder.clips)
    (tmp_path / "names.txt").write_text("a red circle\na blue square\n")
    assert read_label_set(tmp_path / "names.txt") == LabelSet(["a red circle", "a blue square"])


def test_examples_teach_invented_names_and_keep_real_ones(clf, world):
    test = [(p, i) for i, pair in enumerate(PAIRS) for p in clips(world, "test", *pair)]
    paths, truth = [p for p, _ in test], torch.tensor([i for _, i in test])

    def top1(names, shots):
        probs = clf.probabilities(paths, {n: clips(world, "train", *pair)[:shots] for n, pair in zip(names, PAIRS)})
        return float((probs.argmax(1) == truth).float().mean())

    invented, real = [f"a {w}" for w in INVENTED], [static_label(*p) for p in PAIRS]
    text_only, one, two = top1(invented, 0), top1(invented, 1), top1(invented, 2)
    assert text_only < 0.15  # the words mean nothing: about chance (1/24)
    assert one > text_only + 0.5 and two >= one - 0.02
    assert top1(real, 2) >= top1(real, 0) - 0.02 and top1(real, 0) > 0.8


def test_abstention_separates_labels_outside_the_list(clf, world):
    listed, held_out = PAIRS[::2], PAIRS[1::2]
    names = [static_label(*p) for p in listed]
    known = [p for pair in listed for p in clips(world, "test", *pair)]
    unknown = [p for pair in held_out for p in clips(world, "test", *pair)]
    _, sims = clf.scores(known + unknown, names)
    best = sims.max(1).values
    assert auroc(best[: len(known)], best[len(known):]) > 0.85  # the README's margin over chance (0.5)
    sample = [p for pair in listed for p in clips(world, "train", *pair)]
    threshold = clf.fit_abstention(sample, names, recall=0.95)
    results = clf.classify(known + unknown, names, abstain=threshold)
    said_none = [r[0][0] == "none" for r in results]
    assert sum(said_none[len(known):]) / len(unknown) > 0.5  # most held-out videos answered "none"
    assert sum(said_none[: len(known)]) / len(known) < 0.25
    assert all(r[0][0] != "none" for r in clf.classify(known, names))  # no threshold, no abstention


def test_threshold_and_auroc_exact():
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert fit_threshold(scores, 0.8) == pytest.approx(0.2)  # keeps 9 of 10 (>= 0.2), at least 80 %
    assert fit_threshold(scores, 1.0) == pytest.approx(0.1)
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([1.0, 2.0])) == pytest.approx(0.875)


def test_cli_test_fits_a_threshold_then_predict_abstains_with_a_label_set(world, tmp_path):
    from zsvc_pl.model.backbone import DEMO_WEIGHTS

    if not DEMO_WEIGHTS.is_file():
        pytest.skip("demo weights not built")
    listed = PAIRS[:6]
    spec = tmp_path / "labels.yaml"
    spec.write_text(yaml.safe_dump({f"a {w}": clips(world, "train", *p)[:2] for w, p in zip(INVENTED, listed)}))

    def copy(pairs, root, name):
        for pair in pairs:
            for p in clips(world, "test", *pair):
                dest = root / name(pair) / Path(p).name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(Path(p).read_bytes())

    inside = {static_label(*p): f"a {w}" for w, p in zip(INVENTED, listed)}
    copy(listed, tmp_path / "known", lambda pair: inside[static_label(*pair)])  # a labelled sample
    copy(PAIRS[:12], tmp_path / "library", lambda pair: static_label(*pair))  # 6 labels in the list, 6 outside
    common = ["--model.model_name", "demo", "--model.pretrained", "demo", "--data.frame_size", "64",
              "--data.num_workers", "0", "--trainer.logger", "false", "--data.label_file", str(spec)]
    cli = cli_main(["test", *common, "--data.root", str(tmp_path / "known"),
                    "--trainer.default_root_dir", str(tmp_path / "test")])
    metrics = cli.trainer.callback_metrics
    threshold = float(metrics["test/abstain_at_95"])
    assert float(metrics["test/top1"]) > 0.8 and 0.0 < threshold < 1.5
    out = tmp_path / "tags.csv"
    cli_main(["predict", *common, "--data.predict_root", str(tmp_path / "library"), "--model.abstain", str(threshold),
              "--predictions.output", str(out), "--model.top_k", "1",
              "--trainer.default_root_dir", str(tmp_path / "p")])
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 48
    right = [r["labels"].split("|")[0] == inside.get(Path(r["path"]).parent.name, "none") for r in rows]
    # without abstention at most the 24 listed videos (50 %) could be right; measured 36 of 48 (seed 11)
    assert sum(right) / len(rows) > 0.65
    blue = [r for r in rows if Path(r["path"]).parent.name.startswith("a blue")]
    assert all(r["labels"].startswith("none|") for r in blue)  # a colour no label has: none of these
