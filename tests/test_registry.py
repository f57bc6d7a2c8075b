"""The method registry reads the weights manifest and offers only intact models."""

from __future__ import annotations

import json
import logging

import pytest

from sr_core import available_methods, get_method
from sr_core.errors import UnknownMethodError, UnsupportedScaleError
from sr_core.registry import load_model, read_manifest, sha256_file

CLASSICAL = ["nearest", "bilinear", "bicubic", "lanczos", "fourier"]


def test_classical_methods_always_offered(tmp_path):
    methods = available_methods(tmp_path)
    assert [m.name for m in methods] == CLASSICAL
    assert all(m.kind == "classical" and m.scales == (2, 3, 4, 5, 6, 7, 8) and m.description for m in methods)


def test_model_offered_with_scales_and_manifest_fields(weights_dir):
    srresnet = get_method("srresnet", weights_dir)
    assert srresnet.kind == "model" and srresnet.scales == (2, 4) and srresnet.label == "SRResNet"
    manifest = read_manifest(weights_dir)
    for entry in manifest["models"]:
        assert entry["sha256"] == sha256_file(weights_dir / entry["file"])
        assert entry["config"]["architecture"] == "SRResNet" and entry["config"]["scale"] == entry["scale"]
    assert load_model(srresnet, 2).config.scale == 2


def test_corrupt_or_missing_weights_not_offered(weights_dir, caplog):
    (weights_dir / "srresnet_x4.safetensors").write_bytes(b"tampered")
    (weights_dir / "srresnet_x2.safetensors").unlink()
    with caplog.at_level(logging.WARNING, logger="sr_core.registry"):
        names = [m.name for m in available_methods(weights_dir)]
        for _ in range(5):  # every lookup re-checks, but a problem is reported once
            assert [m.name for m in available_methods(weights_dir)] == CLASSICAL
    assert names == CLASSICAL
    assert "sha256" in caplog.text and "missing" in caplog.text
    assert caplog.text.count("fail their sha256 check") == 1 and caplog.text.count("are missing") == 1


def test_broken_manifest_keeps_classical(weights_dir, caplog):
    (weights_dir / "manifest.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert [m.name for m in available_methods(weights_dir)] == CLASSICAL
    assert "manifest" in caplog.text


def test_unknown_method_and_scale(weights_dir):
    with pytest.raises(UnknownMethodError, match="bicubic"):
        get_method("waifu2x", weights_dir)
    with pytest.raises(UnsupportedScaleError, match="x2, x4"):
        get_method("srresnet", weights_dir).check_scale(3)


def test_model_folder_works_as_method(tmp_path, tiny_srresnet):
    tiny_srresnet(scale=2).save_pretrained(tmp_path / "mine")
    method = get_method(str(tmp_path / "mine"), tmp_path)
    assert method.kind == "model" and method.scales == (2,)


def test_shipped_manifest_is_consistent():
    manifest = read_manifest()
    names = [m.name for m in available_methods()]
    for entry in manifest["models"]:
        assert entry["name"] in names, f"shipped model {entry['name']} x{entry['scale']} is not offered"
    json.dumps(manifest)
