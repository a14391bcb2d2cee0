"""Prompt text: template sets, per-class descriptions, and the prompts of a label list. Pure Python."""

from __future__ import annotations

from pathlib import Path

from zsvc_pl.labels import humanize_label
from zsvc_pl.yaml_files import read_yaml

# Template sets. "video" is the CLIP paper's single video prompt; "action" is a short ensemble
# from the CLIP paper's UCF101/Kinetics prompts; "clip_ucf101" is that paper's full UCF101 set.
_ACTION_FORMS = ("a photo of a person {}.", "a video of a person {}.", "a example of a person {}.",
                 "a demonstration of a person {}.")
TEMPLATE_SETS: dict[str, list[str]] = {
    "none": ["{}"],
    "video": ["a video of {}."],
    "photo": ["a photo of {}."],
    "action": ["a video of a person {}.", "a photo of a person {}.", "a video of a person doing {}.",
               "a demonstration of a person {}.", "a video of {}.", "an example of {}."],
    "clip_ucf101": [t.replace("a person", f"{who}{verb}").replace("  ", " ")
                    for t in _ACTION_FORMS
                    for who in ("a person", "the person")
                    for verb in ("", " using", " doing", " during", " performing", " practicing")],
}


def load_templates(spec: str | list[str]) -> list[str]:
    """Templates from a built-in set name, a text file (one template per line), or a list.

    Each template holds ``{}`` where the class text goes.
    """
    if isinstance(spec, str):
        if spec in TEMPLATE_SETS:
            templates = TEMPLATE_SETS[spec]
        elif Path(spec).is_file():
            templates = [line.strip() for line in Path(spec).read_text().splitlines()
                         if line.strip() and not line.startswith("#")]
        elif "{}" in spec:
            templates = [spec]
        else:
            raise ValueError(
                f"templates '{spec}' is neither a built-in set {sorted(TEMPLATE_SETS)}, a file, "
                "nor a template with '{}'"
            )
    else:
        templates = list(spec)
    bad = [t for t in templates if "{}" not in t]
    if not templates or bad:
        raise ValueError(f"every template needs a '{{}}' placeholder; got {bad or 'no templates'}")
    return templates


def load_descriptions(path: str | Path) -> dict[str, list[str]]:
    """Per-class descriptions or synonyms from a YAML/JSON mapping ``class: [text, ...]``."""
    data = read_yaml(path, "descriptions file")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping from class name to a description or list of descriptions")
    out = {}
    for name, texts in data.items():
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(name, str) or not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{path}: {name!r}: expected a class name with a text or a list of texts")
        out[name] = texts
    return out


def class_texts(
    class_names: list[str], descriptions: dict[str, list[str]] | None = None, mode: str = "add"
) -> list[list[str]]:
    """The texts that stand for each class: its humanized name, plus (``add``) or instead of
    (``replace``) its descriptions."""
    if mode not in ("add", "replace"):
        raise ValueError(f"descriptions mode must be 'add' or 'replace', got '{mode}'")
    descriptions = descriptions or {}
    out = []
    for name in class_names:
        extra = descriptions.get(name, [])
        base = [humanize_label(name)]
        out.append(extra if (mode == "replace" and extra) else base + extra)
    return out


def class_prompts(class_names: list[str], templates: list[str],
                  descriptions: dict[str, list[str]] | None = None, mode: str = "add") -> list[list[str]]:
    """Every prompt string of every class: texts x templates."""
    return [[t.format(text) for text in texts for t in templates]
            for texts in class_texts(class_names, descriptions, mode)]
