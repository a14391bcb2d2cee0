"""Command line: ``python -m zsvc_pl fit|validate|test|predict`` through LightningCLI.

``main(args)`` serves ``python -m zsvc_pl``, the ``zsvc`` console script, tests and notebooks alike. Every run
gets its own folder (``runs/<subcommand>-<time>`` unless ``--trainer.default_root_dir`` is given) holding its
resolved config, ``errors.csv``, figures, predictions and ``checkpoints/last.ckpt``, whatever the logger.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import NoReturn

from jsonargparse import set_loader
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, SaveConfigCallback
from yaml import YAMLError

from zsvc_pl.data.datamodule import VideoDataModule
from zsvc_pl.flags import one_line_error, option_strings
from zsvc_pl.train.callbacks import INTERRUPTED, CheckpointFolderGuard, RunReport
from zsvc_pl.train.run_card import RunCard
from zsvc_pl.train.checkpoints import (
    MOVED_HPARAMS,
    AtomicCheckpointIO,
    CheckpointError,
    read_checkpoint,
)
from zsvc_pl.train.figures import ResultPlots
from zsvc_pl.train.predictions import PredictionWriter
from zsvc_pl.train.task import VideoClassificationTask
from zsvc_pl.yaml_files import YamlFileError, loads, read_yaml

set_loader("zsvc_yaml", loads, exceptions=(YAMLError,))  # configs and flag values: safe YAML without aliases
_LINKED = {"class_names", "base_classes"}  # set from the data module, never from a checkpoint or a flag
_NOISE = ("GPU available", "TPU available", "HPU available", "💡 Tip", "You are using a CUDA device",
          "\nDetected KeyboardInterrupt")


class UsageError(SystemExit):
    """A mistake in the command: one line on stderr, exit code 2."""

    def __init__(self, message: str) -> None:
        print(f"zsvc_pl: error: {message}", file=sys.stderr)
        super().__init__(2)


class OneLineArgumentParser(LightningArgumentParser):
    """LightningCLI's parser whose mistakes are one line naming the closest valid flags, and which takes no
    abbreviated flags (``--data.num_frame`` is refused, not read as ``--data.num_frames``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if isinstance(ex, (ValueError, FileNotFoundError)) and not str(message).lower().startswith("unrecognized"):
            message = str(ex) or message
        one_line_error(f"zsvc {self.prog.split()[-1]}" if " " in self.prog else "zsvc", message,
                       option_strings(self))


class RunConfig(SaveConfigCallback):
    """Saves the resolved config as ``<stage>-config.yaml`` in the run folder, never over an earlier run's."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        folder = Path(trainer.log_dir or trainer.default_root_dir)
        stage = getattr(stage, "value", stage)
        name, n = f"{stage}-config.yaml", 2
        while (folder / name).exists():
            name, n = f"{stage}-config-{n}.yaml", n + 1
        self.config_filename = name
        super().setup(trainer, pl_module, stage)


class ZsvcCLI(LightningCLI):
    """LightningCLI with the data module's classes passed to the model and checkpoint settings checked.

    ``explicit``: the ``model.*`` keys given on the command line, which must agree with a checkpoint's.
    """

    def __init__(self, *args, explicit: set[str] = frozenset(), **kwargs) -> None:
        self.explicit = set(explicit)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.base_classes", "model.base_classes", apply_on="instantiate")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(RunReport, "report")
        parser.add_lightning_class_args(RunCard, "run_card")
        parser.add_lightning_class_args(ResultPlots, "plots")

    def _parse_ckpt_path(self) -> None:
        """Take the checkpoint's model settings; a setting given on the command line or in a config that differs
        from the checkpoint's is refused, naming both values (Lightning would silently use the checkpoint's)."""
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if not ckpt_path:
            return
        try:
            ckpt = read_checkpoint(ckpt_path)
        except CheckpointError as e:
            raise UsageError(f"{e} (--ckpt_path)") from None
        params = inspect.signature(VideoClassificationTask.__init__).parameters
        saved = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if k in params and k not in _LINKED}
        given = self.config[sub]["model"]
        conflicts = [f"model.{k}: checkpoint {saved[k]!r}, given {given[k]!r}" for k in saved
                     if given.get(k) != saved[k] and (k in self.explicit or given.get(k) != params[k].default)]
        if conflicts:
            raise UsageError(f"{ckpt_path} was trained with other settings than those given: "
                             + "; ".join(conflicts) + ". Drop those flags (the checkpoint's are used) or use a "
                             "checkpoint trained with them")
        self.config = self.parser.parse_object({sub: {"model": saved}}, self.config)

    def before_instantiate_classes(self) -> None:
        if self.subcommand is None:  # built without running (fill_cache): no run folder
            return
        cfg = self.config[self.subcommand]
        if cfg.trainer.default_root_dir is None:
            cfg.trainer.default_root_dir = os.path.join("runs", f"{self.subcommand}-{time.strftime('%Y%m%d-%H%M%S')}")

    def before_fit(self) -> None:
        for cb in self.trainer.checkpoint_callbacks:  # one documented place: <run folder>/checkpoints
            if cb.dirpath is None:
                cb.dirpath = os.path.join(self.trainer.default_root_dir, "checkpoints")
        self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()  # never truncates an existing checkpoint
        resume_from = self.config[self.subcommand].get("ckpt_path")
        for folder in {cb.dirpath for cb in self.trainer.checkpoint_callbacks}:
            self.trainer.callbacks.insert(0, CheckpointFolderGuard(folder, resume_from))  # before the config is saved


def _model_flags(args: list[str]) -> set[str]:
    """The ``model.*`` keys given on the command line."""
    return {a.split("=")[0].removeprefix("--model.") for a in args if a.startswith("--model.")}


def _check_moved_keys(args: list[str]) -> None:
    """Options that left the model: say where they went, on the command line or in a config file."""
    given = list(_model_flags(args))
    for path in _option(args, "--config") + _option(args, "-c"):
        try:
            config = read_yaml(path, "config file")
        except YamlFileError as e:
            raise UsageError(str(e)) from None
        if not isinstance(config, dict):
            raise UsageError(f"config file {path} must be a mapping of sections (model:, data:, trainer:), got "
                             f"{type(config).__name__}")
        model = config.get("model") or {}
        given += list(model.get("init_args", model) if isinstance(model, dict) else [])
    for key in given:
        if key in MOVED_HPARAMS:
            raise UsageError(f"model.{key} has moved to {MOVED_HPARAMS[key]}: use --{MOVED_HPARAMS[key]}")


def _option(args: list[str], name: str) -> list[str]:
    """The values given to ``name`` on the command line (``--name VALUE`` or ``--name=VALUE``)."""
    return ([args[i + 1] for i, a in enumerate(args[:-1]) if a == name]
            + [a.split("=", 1)[1] for a in args if a.startswith(name + "=")])


class _QuietLightning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(_NOISE) and "litlogger" not in message and "litmodels" not in message


def main(args: ArgsType = None, run: bool = True) -> ZsvcCLI:
    """Build and run the CLI (``main(["test", "--config", ...])``; ``run=False``: build the model, data module
    and trainer from options without a subcommand). A user mistake ends with one line and exit code 2;
    ``--debug`` (or ``ZSVC_DEBUG=1``) shows the full traceback instead."""
    from zsvc_pl.data.decoding import VideoDecodeError
    from zsvc_pl.data.outputs import OutputError
    from zsvc_pl.labels import LabelError
    from zsvc_pl.model.backbone import BackboneLoadError
    from zsvc_pl.train.checkpoints import BackboneMismatchError

    args = list(sys.argv[1:] if args is None else args)
    debug = "--debug" in args or os.environ.get("ZSVC_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    _check_moved_keys(args)
    explicit = _model_flags(args)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_QuietLightning())
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(?!zsvc_pl)")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"(?!zsvc_pl)")
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # main(args) is by design
            INTERRUPTED.clear()
            return ZsvcCLI(VideoClassificationTask, VideoDataModule, seed_everything_default=0,
                           save_config_callback=RunConfig, parser_kwargs={"parser_mode": "zsvc_yaml"}, args=args,
                           parser_class=OneLineArgumentParser,
                           explicit=explicit, run=run)
    except SystemExit as e:  # Lightning ends a run stopped by Ctrl-C with exit(1), after its callbacks ran
        if e.code != 1 or not INTERRUPTED or debug:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores Ctrl-C from then on
        print(f"zsvc {INTERRUPTED['stage']}: interrupted; {INTERRUPTED['how']}", file=sys.stderr)
        raise SystemExit(130) from None
    except (ValueError, FileNotFoundError, LabelError, OutputError, BackboneLoadError, BackboneMismatchError,
            CheckpointError, VideoDecodeError, FloatingPointError) as e:
        if debug:
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        ckpt = _option(args, "--ckpt_path")
        if isinstance(e, (CheckpointError, BackboneMismatchError)) and ckpt and ckpt[-1] not in message:
            message = f"{ckpt[-1]}: {message}"  # errors raised while Lightning restores it do not know the file
        raise UsageError(message) from None
