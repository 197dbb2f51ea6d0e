"""Colour images for chapter 9: a synthetic set with known ambiguity and natural-image patches.

Images live in CIE Lab (``skimage.color``): the lightness ``L`` in [0, 100] is the grey image a
model sees, the two chroma channels ``ab`` are what it predicts. Both are float32 tensors,
``L`` of shape (N, 1, H, W) and ``ab`` of shape (N, 2, H, W), in Lab units.

* :func:`synthetic`: one shaded object (disk, square or diamond) on a neutral background, tinted
  with one of ``K = 4`` hues of the SAME lightness and chroma (:data:`HUE_ANGLES`,
  :data:`CHROMA`). The geometry (and so ``L``) is drawn from one random stream and the hue from
  another, so ``L`` is exactly the same whatever the hue: the grey image carries no information
  about it, and the best a deterministic predictor can do is the mean of the four hues, grey.
* :func:`natural_patches`: square patches of the photographs shipped with scikit-image,
  scikit-learn and matplotlib (:data:`PHOTOS`; no network). Each photo is rescaled so that its
  short side is ``4 * size`` pixels; training patches come from its left three quarters, test
  patches from its right quarter, so no test pixel is ever seen in training.
* :func:`hue_rotated`: natural patches whose ab field is turned by a random multiple of 90°
  (source ``"rotated"``): the textures, edges and saturations of photographs with a hue that,
  by construction, the grey image cannot predict.
* :func:`lfw_faces` (optional, the larger set): the colour photos of Labeled Faces in the Wild
  (Huang et al. 2007; Deshpande et al. 2017 colorize them too), one archive fetched with pooch
  and checked against its SHA-256 (:mod:`vaecourse.data.download`). The
  split is by person, so no test face is ever seen in training.
"""


from __future__ import annotations

import math
import os
import tarfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image
from skimage import color, transform
from torch import Tensor

from vaecourse.data import download

HUE_ANGLES = (45.0, 135.0, 225.0, 315.0)  # degrees in the ab plane: orange, green, blue, magenta
CHROMA = 35.0  # |ab| of every hue: inside the sRGB gamut for L* in OBJECT_L
OBJECT_L = (68.0, 78.0)  # lightness range of the shaded object (the same for every hue)
BACKGROUND_L = (15.0, 50.0)  # lightness range of the neutral (ab = 0) background
SHAPES = ("disk", "square", "diamond")
SOURCES = ("synthetic", "natural", "rotated", "lfw")
HUE_TURNS = 4  # hue_rotated turns each ab field by a multiple of 360 / HUE_TURNS degrees
HUE_STREAM = 1_000_003  # offset of the hue seed from the geometry seed


@dataclass(frozen=True)
class ColorData:
    """Grey images ``L`` (N, 1, H, W), colours ``ab`` (N, 2, H, W), in Lab units.

    The synthetic set also holds the ``hue`` index (N,) of each object and its ``mask``
    (N, 1, H, W, bool); natural patches and faces have neither (None).
    """

    L: Tensor
    ab: Tensor
    source: str  # one of SOURCES
    hue: Tensor | None = None
    mask: Tensor | None = None

    def __len__(self) -> int:
        return len(self.L)


def hue_ab(angles: tuple[float, ...] = HUE_ANGLES, chroma: float = CHROMA) -> Tensor:
    """The (K, 2) ab coordinates ``chroma * (cos h, sin h)`` of the hues (angles in degrees)."""
    h = torch.deg2rad(torch.tensor(angles, dtype=torch.float64))
    return (chroma * torch.stack([h.cos(), h.sin()], dim=-1)).float()


def _check_size(n: int, size: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8 (pixels), got {size!r}")


def synthetic_geometry(n: int, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Lightness ``L`` (n, 1, size, size) and object ``mask`` of n random scenes.

    One object per scene (a disk, square or diamond of radius 0.2-0.35 of the side, anywhere
    inside the image), shaded linearly in a random direction over :data:`OBJECT_L`; the
    background is a linear ramp within :data:`BACKGROUND_L`.
    """
    _check_size(n, size)

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=generator)

    grid = (torch.arange(size) + 0.5) / size
    y, x = grid.view(1, -1, 1), grid.view(1, 1, -1)
    radius = uniform(0.2, 0.35, 1, 1)
    cy, cx = uniform(0.0, 1.0, 1, 1), uniform(0.0, 1.0, 1, 1)
    cy, cx = radius + cy * (1 - 2 * radius), radius + cx * (1 - 2 * radius)
    shape = torch.randint(len(SHAPES), (n, 1, 1), generator=generator)
    dy, dx = (y - cy).abs(), (x - cx).abs()
    distance = torch.where(shape == 0, torch.sqrt(dy**2 + dx**2),
                           torch.where(shape == 1, torch.maximum(dy, dx), (dy + dx) / 1.3))
    mask = distance < radius

    def ramp(lo: float, hi: float) -> Tensor:  # a linear ramp from lo to hi across the image
        angle = uniform(0.0, 2 * math.pi, 1, 1)
        t = (x - 0.5) * angle.cos() + (y - 0.5) * angle.sin()  # in [-0.71, 0.71]
        return lo + (hi - lo) * (t / math.sqrt(2) + 0.5)

    background = ramp(*BACKGROUND_L)
    light = torch.where(mask, ramp(*OBJECT_L), background)
    return light.unsqueeze(1).float(), mask.unsqueeze(1)


def synthetic(n: int, size: int, seed: int = 0, hue_seed: int | None = None) -> ColorData:
    """n synthetic scenes of ``size`` x ``size`` pixels (see the module docstring).

    The geometry comes from ``torch.Generator().manual_seed(seed)``, the hues (uniform over
    the K of :func:`hue_ab`) from a second generator seeded with ``hue_seed`` (default
    ``seed + HUE_STREAM``): changing ``hue_seed`` recolours the objects and leaves ``L``
    exactly as it was.
    """
    light, mask = synthetic_geometry(n, size, torch.Generator().manual_seed(seed))
    hue_seed = seed + HUE_STREAM if hue_seed is None else hue_seed
    hues = hue_ab()
    hue = torch.randint(len(hues), (n,), generator=torch.Generator().manual_seed(hue_seed))
    ab = hues[hue].view(n, 2, 1, 1) * mask
    return ColorData(L=light, ab=ab.float(), source="synthetic", hue=hue, mask=mask)


def lab_to_rgb(L: Tensor, ab: Tensor) -> np.ndarray:
    """sRGB images (N, H, W, 3) in [0, 1] of Lab images (``skimage.color.lab2rgb``)."""
    if L.shape[1:2] != (1,) or ab.shape[1:2] != (2,) or L.shape[2:] != ab.shape[2:]:
        raise ValueError(f"L must be (N, 1, H, W) and ab (N, 2, H, W) of the same H, W, "
                         f"got {tuple(L.shape)} and {tuple(ab.shape)}")
    lab = torch.cat([L, ab], dim=1).permute(0, 2, 3, 1).double().cpu().numpy()
    with warnings.catch_warnings():  # predictions may leave the gamut: clipped on purpose
        warnings.filterwarnings("ignore", message=".*negative Z values", category=UserWarning)
        return np.clip(color.lab2rgb(lab), 0.0, 1.0)


def rgb_to_lab(rgb: np.ndarray) -> tuple[Tensor, Tensor]:
    """``(L, ab)`` tensors of sRGB images (N, H, W, 3) in [0, 1] (``skimage.color.rgb2lab``)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must have shape (N, H, W, 3), got {rgb.shape}")
    lab = torch.from_numpy(color.rgb2lab(rgb)).float().permute(0, 3, 1, 2)
    return lab[:, :1].contiguous(), lab[:, 1:].contiguous()


def _sample_data(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import matplotlib.cbook
        import matplotlib.image

        with matplotlib.cbook.get_sample_data(name) as f:
            return matplotlib.image.imread(f, format=name.rsplit(".", 1)[-1])

    return load


def _sklearn_image(index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]

    return load


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


# The embedded photographs: name -> loader of an (H, W, 3) uint8 RGB array.
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "coffee": _skimage("coffee"),
    "chelsea": _skimage("chelsea"),
    "rocket": _skimage("rocket"),
    "china": _sklearn_image(0),
    "flower": _sklearn_image(1),
    "grace_hopper": _sample_data("grace_hopper.jpg"),
}


@lru_cache(maxsize=4)
def photos_lab(size: int) -> tuple[Tensor, ...]:
    """Every photo of :data:`PHOTOS` in Lab, (3, H, W), rescaled to a short side of 4 * size."""
    out = []
    for load in PHOTOS.values():
        rgb = np.asarray(load())[..., :3]
        rgb = rgb.astype(np.float64) / (255.0 if rgb.dtype == np.uint8 else 1.0)
        scale = 4 * size / min(rgb.shape[:2])
        small = transform.rescale(rgb, scale, channel_axis=-1, anti_aliasing=True)
        lab = torch.from_numpy(color.rgb2lab(np.clip(small, 0, 1))).float().permute(2, 0, 1)
        out.append(lab.contiguous())
    return tuple(out)


def natural_patches(n: int, size: int, split: str = "train", seed: int = 0) -> ColorData:
    """n random ``size`` x ``size`` patches of the embedded photos (equally many per photo).

    ``split="train"``: patches inside the left three quarters of each photo, flipped
    left-right with probability 1/2; ``split="test"``: patches inside the right quarter.
    """
    _check_size(n, size)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    g = torch.Generator().manual_seed(seed)
    images = photos_lab(size)
    patches = []
    for i in range(n):
        lab = images[i % len(images)]
        height, width = lab.shape[1:]
        cut = (3 * width) // 4
        lo, hi = (0, cut - size) if split == "train" else (cut, width - size)
        top = int(torch.randint(height - size + 1, (1,), generator=g))
        left = int(torch.randint(lo, hi + 1, (1,), generator=g))
        patch = lab[:, top:top + size, left:left + size]
        if split == "train" and torch.rand(1, generator=g) < 0.5:
            patch = patch.flip(-1)
        patches.append(patch)
    lab = torch.stack(patches)
    return ColorData(L=lab[:, :1].contiguous(), ab=lab[:, 1:].contiguous(), source="natural")


def hue_rotated(data: ColorData, seed: int, turns: int = HUE_TURNS) -> ColorData:
    """Each image's ab field turned in the ab plane by a random multiple of 360° / ``turns``.

    The turn of each image is drawn (seeded) independently of the image, and ``L`` is kept bit
    for bit, so the grey image tells nothing about which turn was taken: every texture comes
    in ``turns`` equally likely hues, with the chroma, edges and rare saturated colours of the
    photograph. The turns sum to zero, so E[ab | L] = 0: the best L2 prediction is grey.
    (A turned colour can leave the sRGB gamut; :func:`lab_to_rgb` clips it for display.)
    """
    if not isinstance(turns, int) or turns < 2:
        raise ValueError(f"turns must be an int >= 2, got {turns!r}")
    g = torch.Generator().manual_seed(seed)
    angle = torch.randint(turns, (len(data),), generator=g).double() * (2 * math.pi / turns)
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    a, b = data.ab[:, 0].double(), data.ab[:, 1].double()
    ab = torch.stack([cos * a - sin * b, sin * a + cos * b], dim=1).float()
    return ColorData(L=data.L, ab=ab, source="rotated")


# Labeled Faces in the Wild: scikit-learn's mirror of the archive, then the original.
LFW_FILE = "lfw.tgz"
LFW_SHA256 = "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0"
LFW_URLS = ("https://ndownloader.figshare.com/files/5976018",
            "http://vis-www.cs.umass.edu/lfw/lfw.tgz")
LFW_CROP = 0.6  # keep the central 60% of each side: the face, the hair and some background
LFW_TEST_EVERY = 10  # people sorted by name: the 1st, 11th, 21st, ... are test people


def lfw_archive(path: str | os.PathLike | None = None) -> Path:
    """The LFW archive in ``download.data_dir("lfw", path)``, downloaded when missing."""
    directory = download.data_dir("lfw", path)
    by_hand = (f"To use LFW without a download, place {LFW_FILE} (from {LFW_URLS[-1]}) in "
               f"{directory} (or set $VAECOURSE_DATA to a folder whose lfw/ subfolder holds it).")
    return download.fetch(LFW_FILE, LFW_SHA256, LFW_URLS, directory, by_hand)


@lru_cache(maxsize=2)
def _lfw_members(archive: Path) -> dict[str, tuple[str, ...]]:
    with tarfile.open(archive) as tar:
        names = sorted(m.name for m in tar if m.isfile() and m.name.lower().endswith(".jpg"))
    people = sorted({Path(name).parent.name for name in names})
    test_people = set(people[::LFW_TEST_EVERY])

    def is_test(name: str) -> bool:
        return Path(name).parent.name in test_people

    return {"train": tuple(n for n in names if not is_test(n)),
            "test": tuple(n for n in names if is_test(n))}


def lfw_members(path: str | os.PathLike | None = None) -> dict[str, tuple[str, ...]]:
    """The JPEG names in the archive of each split, ``{"train": ..., "test": ...}``, sorted.

    People sorted by name are split so that every :data:`LFW_TEST_EVERY`-th one (starting
    with the first) is a test person: a person's photos are all in one split.
    """
    return _lfw_members(lfw_archive(path))


def _lfw_image(file: IO[bytes], size: int) -> np.ndarray:  # (size, size, 3) uint8 of a JPEG
    with Image.open(file) as image:
        width, height = image.size
        side = LFW_CROP * min(width, height)
        box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
        small = image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS, box=box)
        return np.asarray(small)


def lfw_faces(n: int, size: int, split: str = "train", seed: int = 0,
              path: str | os.PathLike | None = None) -> ColorData:
    """n LFW photos of ``split`` drawn without replacement (seeded), cropped and resized.

    Each photo keeps its central :data:`LFW_CROP` of each side, resized to ``size`` x
    ``size`` (Lanczos); training photos are flipped left-right with probability 1/2.
    """
    _check_size(n, size)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    archive = lfw_archive(path)
    members = _lfw_members(archive)[split]
    if n > len(members):
        raise ValueError(f"the LFW {split} split holds {len(members)} photos, asked for {n}")
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(members), generator=g)[:n].tolist()
    position = {members[i]: k for k, i in enumerate(chosen)}
    rgb = np.zeros((n, size, size, 3), np.uint8)
    with tarfile.open(archive) as tar:  # one pass in archive order: a .tgz reads sequentially
        for member in tar:
            if member.name in position:
                rgb[position[member.name]] = _lfw_image(tar.extractfile(member), size)
    if split == "train":
        flip = (torch.rand(n, generator=g) < 0.5).numpy()
        rgb[flip] = rgb[flip, :, ::-1]
    L, ab = rgb_to_lab(rgb / 255.0)
    return ColorData(L=L, ab=ab, source="lfw")


def load(source: str, n_train: int, n_test: int, size: int, seed: int = 0
         ) -> tuple[ColorData, ColorData]:
    """Training and test sets of ``source`` (one of :data:`SOURCES`); test seeds differ.

    For LFW, at most what each split holds (its people are split by name, not by count).
    """
    if source == "synthetic":
        return synthetic(n_train, size, seed), synthetic(n_test, size, seed + 1)
    if source == "natural":
        return (natural_patches(n_train, size, "train", seed),
                natural_patches(n_test, size, "test", seed + 1))
    if source == "rotated":
        return (hue_rotated(natural_patches(n_train, size, "train", seed), seed + HUE_STREAM),
                hue_rotated(natural_patches(n_test, size, "test", seed + 1),
                            seed + 1 + HUE_STREAM))
    if source == "lfw":
        members = lfw_members()
        n_train, n_test = min(n_train, len(members["train"])), min(n_test, len(members["test"]))
        return lfw_faces(n_train, size, "train", seed), lfw_faces(n_test, size, "test", seed + 1)
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
