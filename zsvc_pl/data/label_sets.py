"""Labels given by words, by example clips, or both.

A label set is read from a YAML mapping (``name: [text or clip path, ...]``; an item with a video file extension
is a clip, resolved against the YAML file's folder, anything else is a text), from a folder with one sub-folder
of example clips per label (the folder name is the label and its text), or from a plain label file (names only).
A label without texts is described by its name; a label without clips is scored by its words alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence, Union


from zsvc_pl.data.annotations import list_videos
from zsvc_pl.data.decoding import VIDEO_EXTENSIONS
from zsvc_pl.labels import LabelError, read_label_file, validate_labels
from zsvc_pl.yaml_files import YamlFileError, read_yaml

LabelsLike = Union[Sequence[str], Mapping[str, Union[str, Sequence[str], None]], "LabelSet"]


@dataclass
class LabelSet:
    """Label names, the texts that describe each one, and its example clips (paths)."""

    names: list[str]
    texts: list[list[str]] = field(default_factory=list)
    clips: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = validate_labels(list(self.names), "the label set", unit="item")
        self.texts = [list(t) or [n] for n, t in zip(self.names, self.texts or [[]] * len(self.names))]
        self.clips = [list(c) for c in (self.clips or [[]] * len(self.names))]

    @property
    def has_examples(self) -> bool:
        return any(self.clips)

    @property
    def prompts(self) -> list[str | tuple[str, ...]]:
        """What the text tower reads per label: the name, or a tuple of texts whose features are averaged."""
        return [n if t == [n] else tuple(t) for n, t in zip(self.names, self.texts)]

    def example_clips(self) -> tuple[list[str], list[int]]:
        """Every example clip and the index of the label it belongs to."""
        pairs = [(clip, i) for i, clips in enumerate(self.clips) for clip in clips]
        return [p for p, _ in pairs], [i for _, i in pairs]

    @classmethod
    def from_mapping(cls, mapping: Mapping, base: Path | None = None, source: str = "the label set") -> "LabelSet":
        """``{name: [text or clip, ...]}`` (a single string or nothing also works)."""
        names, texts, clips = [], [], []
        for name, items in mapping.items():
            items = [] if items is None else [items] if isinstance(items, str) else items
            if not isinstance(name, str) or not isinstance(items, (list, tuple)) or not all(
                    isinstance(x, str) for x in items):
                raise LabelError(f"{source}: {name!r}: expected a label (text) with a text, a clip or a list of "
                                 "them (quote what YAML reads as a number or a boolean)")
            words, paths = [], []
            for item in items:
                item = item.strip()
                if Path(item).suffix.lower() in VIDEO_EXTENSIONS:
                    path = Path(item) if base is None or Path(item).is_absolute() else base / item
                    if not path.is_file():
                        raise LabelError(f"{source}: example clip of {name!r} not found: {path}")
                    paths.append(str(path))
                elif item:
                    words.append(item)
            names.append(name)
            texts.append(words)
            clips.append(paths)
        return cls(names, texts, clips)


def is_label_set(path: str | Path) -> bool:
    """True for what only a label set can be: a YAML file or a folder."""
    return Path(path).suffix.lower() in (".yaml", ".yml") or Path(path).is_dir()


def read_label_set(source: LabelsLike | str | Path) -> LabelSet:
    """A ``LabelSet`` from a list of names, a mapping, a YAML file, a folder of example clips or a label file."""
    if isinstance(source, LabelSet):
        return source
    if isinstance(source, Mapping):
        return LabelSet.from_mapping(source)
    if not isinstance(source, (str, Path)):
        return LabelSet(list(source))
    path = Path(source)
    if path.is_dir():
        folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        clips = [list_videos(p) for p in folders]
        if not folders or not any(clips):
            raise LabelError(f"{path}: no label folders with example clips (expected {path}/<label>/<clip>.mp4)")
        return LabelSet([p.name for p in folders], [], clips)
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            mapping = read_yaml(path, "label set")
        except YamlFileError as e:
            raise LabelError(str(e)) from None
        if not isinstance(mapping, dict) or not mapping:
            raise LabelError(f"{path}: expected a mapping 'label: [text or clip, ...]'")
        return LabelSet.from_mapping(mapping, path.parent, str(path))
    return LabelSet(read_label_file(path))
