"""Training data: LR made by antialiased bicubic, deterministic augmented patches, modes, sub-images, offline."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sr_core.data import (
    DIV2K_HUB_FILES,
    DIV2K_HUB_ID,
    ImageList,
    PatchDataset,
    augment,
    check_hub_dataset,
    iter_validation,
    load_image_dataset,
    make_lr,
    prepare_subimages,
    subimage_boxes,
)
from sr_core.errors import OfflineError, SRError


def smooth(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = [0.5 + 0.4 * np.sin(x / rng.uniform(3, 9) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(3, 9))
              for _ in range(3)]  # fmt: skip
    return (np.stack(planes, axis=2) * 255).round().astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    directory = tmp_path / "imgs"
    directory.mkdir()
    for i, (h, w) in enumerate([(40, 48), (52, 36), (44, 44)]):
        Image.fromarray(smooth(rng, h, w)).save(directory / f"im{i}.png")
    return directory


def images_of(folder, tmp_path) -> ImageList:
    return ImageList.from_source(folder, cache_dir=tmp_path / "hf")


@pytest.mark.parametrize("scale", [2, 4])
def test_lr_matches_antialiased_bicubic_reference(scale):
    rng = np.random.default_rng(scale)
    hr = smooth(rng, 96, 96)
    hr[40:60, 40:60] = 255  # an edge, where the kernels' support matters
    hr[:32, :32] = rng.integers(0, 256, (32, 32, 3))  # fine texture, where antialiasing matters
    lr = make_lr(hr, scale)
    assert lr.shape == (96 // scale, 96 // scale, 3) and lr.dtype == np.uint8
    x = torch.from_numpy(hr).permute(2, 0, 1)[None].double()
    reference = F.interpolate(x, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    reference = reference.clamp(0, 255)[0].permute(1, 2, 0).numpy()
    assert np.abs(lr.astype(np.float64) - reference).mean() < 1.0  # 1/255 in [0, 1] units
    # Plain (non-antialiased) bicubic sampling is measurably different, so the check has teeth.
    aliased = F.interpolate(x, scale_factor=1 / scale, mode="bicubic", antialias=False, align_corners=False)
    assert np.abs(lr - aliased.clamp(0, 255)[0].permute(1, 2, 0).numpy()).mean() > 1.0


def test_augment_gives_the_eight_symmetries_of_the_square():
    patch = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
    got = {augment(patch, flip, k).tobytes() for flip in (False, True) for k in range(4)}
    expected = set()
    for p in (patch, np.fliplr(patch)):
        for k in range(4):
            expected.add(np.ascontiguousarray(np.rot90(p, k)).tobytes())
    assert got == expected and len(got) == 8


def test_patches_are_deterministic_augmented_crops(folder, tmp_path):
    images = images_of(folder, tmp_path)
    ds = PatchDataset(images, patch_size=16, scale=4, seed=7, length=40)
    originals = [images.rgb(i) for i in range(len(images))]
    seen_images, seen_rotations = set(), set()
    for index in range(40):
        item = ds[index]
        again = ds[index]
        assert torch.equal(item["hr"], again["hr"]) and torch.equal(item["lr"], again["lr"])
        hr = item["hr"].permute(1, 2, 0).numpy()
        assert hr.shape == (16, 16, 3) and item["lr"].shape == (3, 4, 4) and item["lr"].dtype == torch.uint8
        np.testing.assert_array_equal(
            item["lr"].permute(1, 2, 0).numpy(),
            np.asarray(Image.fromarray(hr).resize((4, 4), Image.Resampling.BICUBIC)),
        )
        # The HR patch is one of the 8 symmetries of a 16x16 window of one of the images.
        found = None
        for j, img in enumerate(originals):
            for flip in (False, True):
                for k in range(4):
                    undone = np.rot90(hr, -k)
                    undone = np.fliplr(undone) if flip else undone
                    windows = np.lib.stride_tricks.sliding_window_view(img, (16, 16, 3))[..., 0, :, :, :]
                    if (windows == undone).all(axis=(2, 3, 4)).any():
                        found = (j, flip, k)
        assert found is not None
        seen_images.add(found[0])
        seen_rotations.add(found[1:])
    assert seen_images == {0, 1, 2} and len(seen_rotations) >= 5
    other = PatchDataset(images, patch_size=16, scale=4, seed=8, length=40)
    assert not torch.equal(other[0]["hr"], ds[0]["hr"])


def test_modes_are_converted_and_small_images_skipped(tmp_path):
    directory = tmp_path / "modes"
    directory.mkdir()
    rng = np.random.default_rng(1)
    rgb = smooth(rng, 40, 40)
    Image.fromarray(rgb[:, :, 0]).save(directory / "a_grey.png")
    Image.fromarray(np.dstack([rgb, np.full((40, 40), 128, np.uint8)])).save(directory / "b_rgba.png")
    Image.fromarray(rgb[:, :, :1].repeat(2, axis=2), mode="LA").save(directory / "c_la.png")
    Image.fromarray(rgb[:, :, 1].astype(np.uint16) * 257).save(directory / "d_16bit.png")
    Image.fromarray(rgb[:20, :30]).save(directory / "e_small.png")
    images = ImageList.from_source(directory, cache_dir=tmp_path / "hf")
    assert [images.name(i) for i in range(len(images))] == ["a_grey.png", "b_rgba.png", "c_la.png",
                                                            "d_16bit.png", "e_small.png"]  # fmt: skip
    grey = images.rgb(0)
    assert grey.shape == (40, 40, 3) and all((grey[:, :, c] == rgb[:, :, 0]).all() for c in range(3))
    np.testing.assert_array_equal(images.rgb(1), rgb)
    assert (images.rgb(2)[:, :, 2] == rgb[:, :, 0]).all()
    np.testing.assert_array_equal(images.rgb(3)[:, :, 0], rgb[:, :, 1])
    ds = PatchDataset(images, patch_size=32, scale=4, seed=0, length=8)
    assert ds.skipped == 1 and ds.usable == [0, 1, 2, 3]
    assert all(ds[i]["hr"].shape == (3, 32, 32) for i in range(8))
    with pytest.raises(SRError, match="at least 64x64"):
        PatchDataset(images, patch_size=64, scale=4, seed=0, length=8)


def test_validation_images_whole_or_centre_cropped(folder, tmp_path):
    images = images_of(folder, tmp_path)
    whole = list(iter_validation(images))
    assert [(n, im.size) for n, im in whole] == [("im0.png", (48, 40)), ("im1.png", (36, 52)), ("im2.png", (44, 44))]
    cropped = list(iter_validation(images, center_crop_size=32, max_images=2))
    assert [im.size for _, im in cropped] == [(32, 32), (32, 32)]
    full = images.rgb(0)
    np.testing.assert_array_equal(np.asarray(cropped[0][1]), full[4:36, 8:40])


def test_subimages_cover_the_image_and_are_cached(tmp_path):
    assert subimage_boxes(100, 70, 48, 24) == [(x, y, x + 48, y + 48) for y in (0, 22) for x in (0, 24, 48, 52)]
    assert subimage_boxes(30, 70, 48, 24) == [(0, 0, 30, 48), (0, 22, 30, 70)]
    directory = tmp_path / "big"
    directory.mkdir()
    big = smooth(np.random.default_rng(2), 70, 100)
    Image.fromarray(big).save(directory / "big.png")
    images = ImageList.from_source(directory, cache_dir=tmp_path / "hf")
    calls = []
    out = prepare_subimages(images, tmp_path / "sub", size=48, step=24, progress=lambda d, t: calls.append((d, t)))
    files = sorted(out.glob("*.png"))
    assert len(files) == 8 and calls == [(1, 1)]
    for f, (x0, y0, x1, y1) in zip(files, subimage_boxes(100, 70, 48, 24), strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(f)), big[y0:y1, x0:x1])
    stamp = files[0].stat().st_mtime_ns
    prepare_subimages(images, tmp_path / "sub", size=48, step=24)
    assert files[0].stat().st_mtime_ns == stamp
    assert len(ImageList.from_source(out, cache_dir=tmp_path / "hf")) == 8


def test_hub_dataset_offline_fails_fast_with_advice(monkeypatch):
    start = time.monotonic()
    with pytest.raises(OfflineError, match="local folder"):
        load_image_dataset(DIV2K_HUB_ID, split="train", data_files=DIV2K_HUB_FILES)
    with pytest.raises(OfflineError, match="data.train_dir"):
        check_hub_dataset(DIV2K_HUB_ID, timeout=3)
    assert time.monotonic() - start < 20


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SRError, match="not a folder"):
        load_image_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SRError, match="No images"):
        load_image_dataset(tmp_path / "empty")
