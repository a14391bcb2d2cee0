"""The offline demo world: a video generator, a small CLIP pretrained on its frames, and the demo run."""

from zsvc_pl.demo.world import all_classes, generate_dataset, motion_label, render_video, static_label

__all__ = ["generate_dataset", "all_classes", "motion_label", "static_label", "render_video"]
