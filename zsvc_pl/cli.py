"""Command line: ``python -m zsvc_pl fit|validate|test|predict`` through LightningCLI."""

from __future__ import annotations

from lightning.pytorch.cli import ArgsType, LightningCLI

from zsvc_pl.callbacks import PredictionWriter, ResultPlots, RunReport
from zsvc_pl.data.datamodule import VideoDataModule
from zsvc_pl.module import ZeroShotVideoClassifier


class ZsvcCLI(LightningCLI):
    """LightningCLI with the data module's class names and split passed to the model."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.base_classes", "model.base_classes", apply_on="instantiate")
        parser.link_arguments("data.num_frames", "model.num_frames")
        parser.link_arguments("data.sampling", "model.sampling")
        parser.link_arguments("data.feature_cache", "model.feature_cache")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(RunReport, "report")
        parser.add_lightning_class_args(ResultPlots, "plots")
        parser.link_arguments("predictions.output", "data.skip_done")


def main(args: ArgsType = None) -> ZsvcCLI:
    """Entry point for ``python -m zsvc_pl``, tests and notebooks (``main(["test", "--config", ...])``)."""
    return ZsvcCLI(
        ZeroShotVideoClassifier,
        VideoDataModule,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
    )
