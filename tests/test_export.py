"""``python -m sr_core.export onnx``: the file runs in onnxruntime, matches torch, is dynamic and has no BatchNorm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from sr_core.export import DEFAULT_OPSET, main  # noqa: E402
from sr_core.registry import get_method, load_model  # noqa: E402

TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The shipped srresnet x4 exported once, as the README's command does it."""
    path = tmp_path_factory.mktemp("onnx") / "srresnet_x4.onnx"
    assert main(["onnx", "--method", "srresnet", "--scale", "4", "-o", str(path)]) == 0
    return path


def torch_reference(x: np.ndarray) -> np.ndarray:
    """The unfused eval-mode model (BatchNorm as trained), clamped to [0, 1] as sr_core.upscale clamps."""
    model = load_model(get_method("srresnet"), 4)
    with torch.no_grad():
        return model(torch.from_numpy(x)).clamp(0, 1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize(("height", "width"), [(48, 64), (17, 23)])
def test_onnxruntime_matches_torch_at_any_size(exported, height, width):
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(height).random((1, 3, height, width), dtype=np.float32)
    (y,) = session.run(["output"], {"input": x})
    assert y.shape == (1, 3, 4 * height, 4 * width)
    difference = np.abs(y - torch_reference(x)).max()
    assert difference < TOLERANCE, f"max |onnxruntime - torch| = {difference:.2e}"


@pytest.mark.slow
def test_the_graph_is_fused_dynamic_and_says_what_it_is(exported):
    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [DEFAULT_OPSET]
    ops = {node.op_type for node in model.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["architecture"] == "SRResNet" and meta["scale"] == "4" and meta["library"] == "sr-studio"


def test_bad_method_or_scale_exits_2(tmp_path, capsys):
    assert main(["onnx", "--method", "bicubic", "--scale", "4", "-o", str(tmp_path / "b.onnx")]) == 2
    assert main(["onnx", "--method", "srresnet", "--scale", "3", "-o", str(tmp_path / "c.onnx")]) == 2
    err = capsys.readouterr().err
    assert "classical method" in err and "x3" in err and not list(tmp_path.iterdir())
