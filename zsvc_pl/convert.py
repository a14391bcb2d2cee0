"""Convert a CLIP checkpoint from another project's layout once, to a file every zsvc_pl entry point loads.

    python -m zsvc_pl.convert vifi_clip_k400.pth --base /weights/ViT-B-16.pt --out vifi-b16.pt
    python -m zsvc_pl test ... --model.pretrained vifi-b16.pt

Reads OpenAI archives, ViFi-CLIP and ActionCLIP checkpoints (``zsvc_pl.model.openai_layout``); writes an
OpenAI-layout state dict. ``--base``: the CLIP a ViFi-CLIP checkpoint started from (a file, or a tag of
``--model-name``), whose token embedding ViFi-CLIP does not save.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zsvc_pl.model.backbone import BackboneLoadError, load_clip, weights_digest
from zsvc_pl.model.converters import ConversionError
from zsvc_pl.model.openai_layout import checkpoint_layout, load_openai_layout, save_openai_layout


def convert(checkpoint: str | Path, out: str | Path, base: str | None = None, model_name: str = "ViT-B-16") -> dict:
    """Convert ``checkpoint`` to ``out``; returns its layout, tensor count and weights digest."""
    layout = checkpoint_layout(checkpoint)
    if layout is None:
        raise ConversionError(f"{checkpoint}: not an OpenAI, ViFi-CLIP or ActionCLIP checkpoint (open_clip files "
                              f"and transformers folders load directly with --model.pretrained)")
    if layout == "vifi-clip" and not base:
        raise ConversionError(f"{checkpoint} is a ViFi-CLIP checkpoint, which does not hold CLIP's token embedding: "
                              f"pass the CLIP it started from with --base (e.g. OpenAI's ViT-B-16.pt)")
    base_state = load_clip(model_name, base).model.state_dict() if layout == "vifi-clip" else None
    model, _ = load_openai_layout(checkpoint, layout, base_state)
    save_openai_layout(model, out)
    return {"layout": layout, "tensors": len(model.state_dict()), "digest": weights_digest(model)[:16]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zsvc_pl.convert", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, help="the converted file (OpenAI-layout state dict)")
    parser.add_argument("--base", default=None, help="ViFi-CLIP only: the CLIP it started from (file or tag)")
    parser.add_argument("--model-name", default="ViT-B-16", help="architecture of --base when it is a tag")
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        parser.exit(2, f"zsvc_pl.convert: error: checkpoint not found: {args.checkpoint}\n")
    try:
        info = convert(args.checkpoint, args.out, args.base, args.model_name)
    except (ConversionError, BackboneLoadError) as e:
        parser.exit(2, f"zsvc_pl.convert: error: {e}\n")
    print(f"{args.checkpoint} ({info['layout']}): {info['tensors']} tensors -> {args.out} "
          f"(weights {info['digest']}); use it with --model.pretrained {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
