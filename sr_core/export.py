"""Export an upscaler to ONNX, the other format chaiNNer and ONNX runtimes load.

    python -m sr_core.export onnx --method srresnet --scale 4 -o srresnet_x4.onnx

The graph is the model's fused inference copy (``fuse_for_inference()``: BatchNorm folded into the convolutions)
with its output clamped to [0, 1], as ``sr_core.upscale`` clamps. Input ``input``: float32 RGB in [0, 1],
(N, 3, H, W) with N, H and W dynamic; output ``output``: (N, 3, H*scale, W*scale). Opset 18 unless ``--opset``.
The method may be a shipped name, a save_pretrained() folder or a Hub id. Needs the extra: ``pip install
"sr-studio[onnx]"`` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .atomic import atomic_path
from .errors import SRError
from .models import SRModel

DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "output"
ONNX_EXTRA = 'ONNX export needs the onnx extra: pip install "sr-studio[onnx]" (onnx, onnxscript, onnxruntime)'


class ClampedOutput(nn.Module):
    """The exported graph: an upscaler followed by a clamp to [0, 1]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).clamp(0.0, 1.0)


def _check_onnx_installed() -> None:
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError as exc:
            raise SRError(ONNX_EXTRA) from exc


def export_onnx(model: SRModel, path: str | os.PathLike, *, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``model`` (fused, clamped, float32, CPU) as an ONNX file with dynamic batch, height and width."""
    _check_onnx_installed()
    graph = ClampedOutput(model.fuse_for_inference().float().cpu()).eval()
    channels = int(model.config_dict().get("in_channels", 3))
    example = torch.rand(2, channels, 64, 48)
    dims = {
        0: torch.export.Dim("batch", min=1),
        2: torch.export.Dim("height", min=1),
        3: torch.export.Dim("width", min=1),
    }
    chatter = io.StringIO()  # the exporter reports its steps on stdout; a library stays quiet
    try:
        with contextlib.redirect_stdout(chatter), torch.no_grad():
            program = torch.onnx.export(
                graph, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                opset_version=opset, dynamic_shapes={"x": dims}, external_data=False,
            )  # fmt: skip
    except Exception as exc:  # the exporter raises many types; the user gets one sentence and the log the rest
        raise SRError(f"ONNX export of {model.architecture} failed (opset {opset}): {exc}") from exc
    proto = program.model_proto
    meta = {"library": "sr-studio", "architecture": model.architecture, "scale": str(model.scale)}
    meta["config"] = json.dumps(model.config_dict())
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    import onnx

    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
    return Path(path)


def build_parser() -> argparse.ArgumentParser:
    """``python -m sr_core.export``'s options."""
    parser = argparse.ArgumentParser(prog="python -m sr_core.export", description=__doc__.split("\n\n")[0])
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    onnx = formats.add_parser("onnx", help="ONNX (dynamic height and width, BatchNorm folded, output in [0, 1])")
    onnx.add_argument("--method", required=True, help="a model method, a save_pretrained() folder or a Hub id")
    onnx.add_argument("--scale", type=int, default=4, help="the model's scale (default: %(default)s)")
    onnx.add_argument("-o", "--output", required=True, type=Path, help="the .onnx file to write")
    onnx.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default: %(default)s)")
    onnx.add_argument("--weights-dir", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 when the file is written, 2 for a bad method, scale or missing extra."""
    args = build_parser().parse_args(argv)
    from .cli import quiet_hub_logging
    from .registry import get_method, load_model

    quiet_hub_logging()
    try:
        model = load_model(get_method(args.method, args.weights_dir), args.scale)
        if not isinstance(model, SRModel):
            raise SRError(f"{args.method} is not an upscaler")
        path = export_onnx(model, args.output, opset=args.opset)
    except SRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {path}: {model.architecture} x{model.scale}, opset {args.opset}, input '{INPUT_NAME}' float32 "
        f"(N, 3, H, W) in [0, 1], output '{OUTPUT_NAME}' (N, 3, {model.scale}H, {model.scale}W)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
