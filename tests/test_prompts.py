import pytest

from zsvc_pl.labels import humanize_label, validate_labels
from zsvc_pl.model.prompts import TEMPLATE_SETS, class_prompts, load_descriptions, load_templates


@pytest.mark.parametrize("name,words", [
    ("ApplyEyeMakeup", "apply eye makeup"), ("ride_horse", "ride horse"), ("YoYo", "yo yo"),
    ("PlayingDaf", "playing daf"), ("drink-water", "drink water"), ("a red circle", "a red circle"),
    ("TaiChi", "tai chi"), ("UCFClass", "UCF class"),
])
def test_humanize_label(name, words):
    assert humanize_label(name) == words


def test_templates_from_set_file_and_string(tmp_path):
    assert load_templates("video") == ["a video of {}."]
    assert len(TEMPLATE_SETS["clip_ucf101"]) == 48
    f = tmp_path / "t.txt"
    f.write_text("# comment\nclip of {}\n\nfootage of {}\n")
    assert load_templates(str(f)) == ["clip of {}", "footage of {}"]
    assert load_templates("my {} template") == ["my {} template"]
    with pytest.raises(ValueError, match="placeholder"):
        load_templates(["no placeholder"])
    with pytest.raises(ValueError, match="built-in set"):
        load_templates("nonexistent_set")


def test_descriptions_add_and_replace(tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("ApplyEyeMakeup: [putting on mascara]\nride_horse: horseback riding\n")
    desc = load_descriptions(f)
    add = class_prompts(["ApplyEyeMakeup", "ride_horse", "Other"], ["a video of {}."], desc, "add")
    assert add[0] == ["a video of apply eye makeup.", "a video of putting on mascara."]
    assert add[2] == ["a video of other."]
    rep = class_prompts(["ride_horse"], ["{}", "a {}"], desc, "replace")
    assert rep == [["horseback riding", "a horseback riding"]]


def test_label_validation():
    assert validate_labels([" a ", "b"]) == ["a", "b"]
    with pytest.raises(ValueError, match="empty"):
        validate_labels([])
    with pytest.raises(ValueError, match="duplicate"):
        validate_labels(["a", "b", "a"])
    assert validate_labels(["café", "跑步"]) == ["café", "跑步"]
