"""The method registry reads the weights manifest and offers only intact models."""

from __future__ import annotations

import json
import logging

import pytest

from sr_core import available_methods, get_method
from sr_core.errors import UnknownMethodError, UnsupportedScaleError
from sr_core.registry import load_model, read_manifest, sha256_file, write_manifest_entry, write_weights_card

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


def test_weights_card_front_matter_comes_from_the_manifest_and_the_body_stays(weights_dir, tiny_srresnet):
    import yaml

    evaluation = {"psnr": 25.5, "ssim": 0.7, "bicubic_psnr": 24.0, "num_images": 4, "data": "val"}
    write_manifest_entry(
        weights_dir, tiny_srresnet(scale=2), name="sharp", label="Sharp",
        extra={"evaluation": evaluation, "training": {"datasets": ["someone/photos"]}},
    )  # fmt: skip
    (weights_dir / "README.md").write_text("---\nold: matter\n---\n# Body written by hand\n")
    write_weights_card(weights_dir)
    text = (weights_dir / "README.md").read_text()
    _, matter, body = text.split("---\n", 2)
    meta = yaml.safe_load(matter)
    assert body.strip() == "# Body written by hand" and "old" not in meta
    assert meta["library_name"] == "sr-studio" and meta["pipeline_tag"] == "image-to-image"
    assert meta["license"] == "apache-2.0"
    assert {"super-resolution", "sr-studio", "srresnet"} <= set(meta["tags"]) and meta["datasets"] == ["someone/photos"]
    (entry,) = meta["model-index"]  # only the evaluated model has metrics
    assert entry["name"] == "SR Studio Sharp x2"
    assert {m["type"]: m["value"] for m in entry["results"][0]["metrics"]} == {"psnr": 25.5, "ssim": 0.7}
