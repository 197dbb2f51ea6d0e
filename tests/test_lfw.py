"""Tests of the optional LFW faces of chapter 9, offline: a small lfw.tgz written by the test
stands in for the 173 MB archive (same layout: lfw/<Person>/<Person>_0001.jpg)."""

import colorsys
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaecourse import config, recipes
from vaecourse.__main__ import main
from vaecourse.data import colorization as data
from vaecourse.data import download

PEOPLE = [f"Person_{chr(ord('A') + i)}" for i in range(12)]  # sorted by name
PHOTOS = 2  # per person
SIDE = 250  # LFW photos are 250 x 250
FRAME = 0.15  # a black frame outside the central 70% of each side: the crop (60%) drops it


def person_rgb(i: int) -> np.ndarray:
    """The flat colour of person i's photos: hues 30 degrees apart, all clearly coloured."""
    return np.array(colorsys.hsv_to_rgb(i / len(PEOPLE), 0.6, 0.8))


def person_ab(i: int) -> torch.Tensor:
    """The ab of person i's colour."""
    return data.rgb_to_lab(person_rgb(i).reshape(1, 1, 1, 3))[1].view(2)


def write_lfw(directory: Path, photos: dict[str, np.ndarray]) -> str:
    """Write directory/lfw.tgz holding ``{person: RGB uint8 image}`` as lfw/<person>/... JPEGs
    (``Person_0001.jpg``, ``Person_0002.jpg``, ... for a list of images); return its SHA-256."""
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for person, images in photos.items():
            for k, rgb in enumerate(images, start=1):
                jpeg = io.BytesIO()
                Image.fromarray(rgb).save(jpeg, format="JPEG", quality=95)
                info = tarfile.TarInfo(f"lfw/{person}/{person}_{k:04d}.jpg")
                info.size = jpeg.tell()
                jpeg.seek(0)
                tar.addfile(info, jpeg)
    content = buffer.getvalue()
    (directory / "lfw.tgz").write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def fake_lfw(directory: Path) -> str:
    """The stand-in archive: PHOTOS flat-coloured photos of each person in a black frame."""
    border = int(FRAME * SIDE)
    photos = {}
    for i, person in enumerate(PEOPLE):
        rgb = np.zeros((SIDE, SIDE, 3), np.uint8)
        rgb[border:-border, border:-border] = np.round(255 * person_rgb(i))
        photos[person] = [rgb] * PHOTOS
    return write_lfw(directory, photos)


@pytest.fixture
def cached_lfw(tmp_path, monkeypatch, no_network):
    """A fake archive cached in $VAECOURSE_DATA/lfw, registered as the published one."""
    monkeypatch.setenv("VAECOURSE_DATA", str(tmp_path))
    monkeypatch.setattr(data, "LFW_SHA256", fake_lfw(tmp_path / "lfw"))
    return no_network


def nearest_person(ab: torch.Tensor) -> tuple[int, float]:
    """The person whose colour is nearest the mean ab of one image, and the distance."""
    distances = torch.stack([(ab.mean((1, 2)) - person_ab(i)).norm() for i in range(len(PEOPLE))])
    return int(distances.argmin()), float(distances.min())


def test_split_is_by_person(cached_lfw):
    members = data.lfw_members()
    people = {split: {Path(n).parent.name for n in names} for split, names in members.items()}
    assert people["test"] == set(PEOPLE[::data.LFW_TEST_EVERY]) == {"Person_A", "Person_K"}
    assert people["train"] == set(PEOPLE) - people["test"]
    assert len(members["train"]) == 10 * PHOTOS and len(members["test"]) == 2 * PHOTOS
    assert cached_lfw == [], "a cached archive must not be downloaded again"


def test_faces_are_cropped_resized_lab_images_of_their_split(cached_lfw):
    faces = data.lfw_faces(4, 16, "test", seed=0)
    assert faces.L.shape == (4, 1, 16, 16) and faces.ab.shape == (4, 2, 16, 16)
    assert faces.L.dtype == faces.ab.dtype == torch.float32 and faces.source == "lfw"
    assert faces.hue is None and faces.mask is None
    found = [nearest_person(ab) for ab in faces.ab]
    assert sorted(person for person, _ in found) == [0, 0, 10, 10]  # all 4 test photos
    assert max(distance for _, distance in found) < 2.0  # Lab units: JPEG and resampling
    assert faces.L.std((1, 2, 3)).max() < 1.0  # flat: the crop left the black frame out
    train = data.lfw_faces(20, 16, "train", seed=0)
    assert {nearest_person(ab)[0] for ab in train.ab} == set(range(1, 10)) | {11}
    assert torch.equal(train.ab, data.lfw_faces(20, 16, "train", seed=0).ab)


def test_training_faces_are_flipped_at_random(tmp_path, monkeypatch, no_network):
    """A photo whose left half is black: flipped copies have it on the right."""
    monkeypatch.setenv("VAECOURSE_DATA", str(tmp_path))
    rgb = np.full((SIDE, SIDE, 3), 200, np.uint8)
    rgb[:, : SIDE // 2] = 0
    sha256 = write_lfw(tmp_path / "lfw", {f"P{i:02d}": [rgb] for i in range(40)})
    monkeypatch.setattr(data, "LFW_SHA256", sha256)
    faces = data.lfw_faces(36, 16, "train", seed=0)  # 36 train people, 4 test people
    flipped = faces.L[:, 0, :, :8].mean((1, 2)) > faces.L[:, 0, :, 8:].mean((1, 2))
    # Binomial(36, 1/2): 4 standard errors (12) either side of 18 never fail by luck.
    assert 6 <= int(flipped.sum()) <= 30
    test = data.lfw_faces(4, 16, "test", seed=0)
    assert not (test.L[:, 0, :, :8].mean((1, 2)) > test.L[:, 0, :, 8:].mean((1, 2))).any()


def test_bad_requests_are_clear_errors(cached_lfw):
    with pytest.raises(ValueError, match="test split holds 4 photos, asked for 5"):
        data.lfw_faces(5, 16, "test")
    with pytest.raises(ValueError, match="split"):
        data.lfw_faces(2, 16, "valid")
    with pytest.raises(ValueError, match="source must be one of"):
        data.load("faces", 2, 2, 16)


def test_preset_sets_take_at_most_what_each_split_holds(cached_lfw):
    # smoke: 128 training and 32 test images asked for
    train_set, test_set = recipes.color_sets(config.PRESETS["smoke"], "lfw")
    assert len(train_set) == 10 * PHOTOS and len(test_set) == 2 * PHOTOS


def test_corrupted_archive_is_an_error(tmp_path, monkeypatch, no_network):
    fake_lfw(tmp_path / "lfw")
    monkeypatch.setattr(data, "LFW_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="SHA-256 .* expected 0000") as info:
        data.lfw_faces(2, 16, path=tmp_path / "lfw")
    assert "lfw.tgz" in str(info.value) and "delete it" in str(info.value)
    assert no_network == []


def test_no_network_says_what_it_tried_and_where_to_put_the_file(tmp_path, monkeypatch,
                                                                   no_network, capsys):
    monkeypatch.setenv("VAECOURSE_DATA", str(tmp_path))
    with pytest.raises(download.DownloadError) as info:
        data.lfw_faces(2, 16)
    message = str(info.value)
    for url in data.LFW_URLS:
        assert url in message
    assert str(tmp_path / "lfw") in message and "place lfw.tgz" in message
    assert no_network == list(data.LFW_URLS)
    # The command line turns it into one line on stderr and exit code 2.
    assert main(["train", "colorization", "--data", "lfw", "--preset", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not download lfw.tgz") and "Traceback" not in err


def test_download_through_pooch_checks_sha256(tmp_path, monkeypatch, local_mirror):
    served, url = local_mirror
    sha256 = fake_lfw(served)
    monkeypatch.setattr(data, "LFW_SHA256", sha256)
    # The first URL refuses connections, the second (loopback) works.
    monkeypatch.setattr(data, "LFW_URLS", ("http://127.0.0.1:9/lfw.tgz", url + "lfw.tgz"))
    cache = tmp_path / "cache"
    assert data.lfw_faces(3, 16, "test", path=cache).L.shape == (3, 1, 16, 16)
    assert hashlib.sha256((cache / "lfw.tgz").read_bytes()).hexdigest() == sha256
    monkeypatch.setattr(data, "LFW_SHA256", "1" * 64)  # served, but not the published file
    with pytest.raises(download.DownloadError, match="lfw.tgz"):
        data.lfw_archive(tmp_path / "other")
    assert not (tmp_path / "other" / "lfw.tgz").exists()


def test_cli_trains_on_lfw(cached_lfw, capsys, monkeypatch):
    assert main(["train", "colorization", "--model", "cvae", "--data", "lfw",
                 "--preset", "smoke"]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results["data"] == "lfw" and results["hue_coverage"] is None
    assert results["train_images"] == 10 * PHOTOS and results["test_images"] == 2 * PHOTOS


def test_chapter_describes_the_loader_as_it_is():
    """Chapter 9's LFW section states the crop and the split: they must be the code's."""
    import nbformat
    from notebooks import ROOT

    notebook = nbformat.read(ROOT / "book" / "09_colorization.ipynb", as_version=4)
    text = " ".join(" ".join(c.source.split()) for c in notebook.cells if c.cell_type == "markdown")
    assert f"the central {data.LFW_CROP:.0%} of each side" in text
    assert data.LFW_TEST_EVERY == 10 and "every tenth person" in text
    assert len(data.LFW_URLS) == 2  # the chapter names both sources
    assert "scikit-learn's mirror or the original site" in text
