"""The Train tab's data handling without a server: uploads and zips, held-out shares, the training-root fence."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from sr_app.training.paths import PathError, folder_inside, resolve_root
from sr_app.training.uploads import Limits, UploadError, collect_uploads, hold_out, link_folder


def png_bytes(colour: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_images_and_a_zip_land_flat_with_numbered_names_and_other_files_are_skipped(tmp_path):
    photo = tmp_path / "my photo.png"
    photo.write_bytes(png_bytes())
    archive = make_zip(tmp_path / "set.zip", {
        "set/a.png": png_bytes(), "set/deeper/b.JPG": png_bytes(), "set/notes.txt": b"hello",
        "__MACOSX/set/._a.png": b"resource fork", "set/.hidden.png": png_bytes(),
    })  # fmt: skip
    target = tmp_path / "data" / "train"
    assert collect_uploads([photo, archive], target) == 3
    assert sorted(p.name for p in target.iterdir()) == ["00001_my_photo.png", "00002_a.png", "00003_b.jpg"]
    assert all(Image.open(p).size == (40, 40) for p in target.iterdir())


@pytest.mark.parametrize("member", ["../evil.png", "/etc/evil.png", "a/../../evil.png", "C:/evil.png"])
def test_a_zip_with_an_unsafe_path_is_refused_whole(tmp_path, member):
    archive = make_zip(tmp_path / "bad.zip", {"fine.png": png_bytes(), member: png_bytes()})
    with pytest.raises(UploadError, match="bad.zip holds an unsafe path"):
        collect_uploads([archive], tmp_path / "train")
    assert not (tmp_path / "evil.png").exists() and not list((tmp_path / "train").iterdir())


def test_limits_on_size_and_count(tmp_path):
    archive = make_zip(tmp_path / "many.zip", {f"{i}.png": png_bytes() for i in range(5)})
    with pytest.raises(UploadError, match="more than 3 images"):
        collect_uploads([archive], tmp_path / "a", Limits(max_files=3))
    with pytest.raises(UploadError, match="many.zip: 0.png is larger than 0 MB"):
        collect_uploads([archive], tmp_path / "b", Limits(max_file_bytes=100))


def test_not_an_image_nor_a_zip_and_a_broken_zip_are_one_sentence(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UploadError, match=r"notes.txt is neither an image \(.*\) nor a .zip of images."):
        collect_uploads([text], tmp_path / "train")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(UploadError, match="broken.zip is not a readable zip file"):
        collect_uploads([broken], tmp_path / "train")


@pytest.mark.parametrize(("count", "share", "expected"), [(12, 0.1, (11, 1)), (20, 0.25, (15, 5)), (2, 0.5, (1, 1))])
def test_held_out_share_moves_at_least_one_image_and_never_all(tmp_path, count, share, expected):
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    for i in range(count):
        (train / f"{i:02d}.png").write_bytes(png_bytes())
    assert hold_out(train, val, share) == expected
    assert len(list(train.iterdir())) == expected[0] and len(list(val.iterdir())) == expected[1]


def test_held_out_needs_two_images(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "only.png").write_bytes(png_bytes())
    with pytest.raises(UploadError, match="at least 2 images; the data has 1"):
        hold_out(tmp_path / "train", tmp_path / "val", 0.1)


@pytest.fixture
def root(tmp_path) -> Path:
    root = resolve_root(tmp_path / "root")
    (root / "photos" / "sub").mkdir(parents=True)
    (root / "photos" / "sub" / "a.png").write_bytes(png_bytes())
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.png").write_bytes(png_bytes())
    return root


def test_folders_inside_the_root_are_accepted_relative_or_absolute(root):
    assert folder_inside(root, "photos", "training") == root / "photos"
    assert folder_inside(root, str(root / "photos" / "sub"), "training") == root / "photos" / "sub"
    assert link_folder(root / "photos", root / "run" / "train") == 1


@pytest.mark.parametrize("text", ["..", "../outside", "/", "photos/../../outside", "{outside}"])
def test_folders_outside_the_root_are_refused_before_looking_at_them(root, text):
    text = text.format(outside=root.parent / "outside")
    with pytest.raises(PathError, match="is outside the training root"):
        folder_inside(root, text, "training")


def test_links_leading_out_of_the_root_are_refused(root):
    (root / "link").symlink_to(root.parent / "outside", target_is_directory=True)
    with pytest.raises(PathError, match="is outside the training root"):
        folder_inside(root, "link", "training")
    (root / "photos" / "sneaky.png").symlink_to(root.parent / "outside" / "secret.png")
    with pytest.raises(PathError, match="holds sneaky.png, a link to outside the training root"):
        folder_inside(root, "photos", "training")


def test_missing_and_empty_folders_are_one_sentence(root):
    with pytest.raises(PathError, match="does not exist under the training root"):
        folder_inside(root, "nope", "validation")
    with pytest.raises(PathError, match="Enter the validation folder"):
        folder_inside(root, "  ", "validation")
