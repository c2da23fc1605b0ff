"""IDX reading, local lookup, offline errors and the download path of MNIST-style data sets."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import struct
from pathlib import Path

import pytest
import torch

from nctui.config import DataConfig
from nctui.data import DataError, load_dataset, read_idx, sources
from nctui.data.idx import read_idx_split

TRAIN_N, TEST_N = 40, 20


def idx_bytes(values: torch.Tensor, magic: int | None = None) -> bytes:
    """The real IDX format: big-endian magic 0x000008<ndim>, one uint32 per dim, the bytes."""
    header = struct.pack(">I", magic if magic is not None else 0x0800 | values.dim())
    header += struct.pack(f">{values.dim()}I", *values.shape)
    return header + bytes(values.to(torch.uint8).flatten().tolist())


def write_idx(path: Path, values: torch.Tensor, *, magic: int | None = None) -> Path:
    """Write gzipped when the name ends in .gz, raw otherwise."""
    data = idx_bytes(values, magic)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def random_split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images with every class present n // 10 times."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=gen, dtype=torch.uint8)
    labels = torch.arange(10).repeat(n // 10)[torch.randperm(n, generator=gen)]
    return images, labels


def write_set(directory: Path, *, raw_names: bool = False) -> dict[str, torch.Tensor]:
    """A small MNIST-shaped set (train 40, test 20) under the official file names."""
    directory.mkdir(parents=True, exist_ok=True)
    train_x, train_y = random_split(TRAIN_N, 1)
    test_x, test_y = random_split(TEST_N, 2)
    tensors = dict(zip(sources.IDX_FILES, (train_x, train_y, test_x, test_y)))
    for name, values in tensors.items():
        write_idx(directory / (name.removesuffix(".gz") if raw_names else name), values)
    return tensors


@pytest.fixture
def small_mnist(monkeypatch: pytest.MonkeyPatch) -> sources.IdxSource:
    """MNIST's table with small counts and no system copy, so tests see only tmp files."""
    small = dataclasses.replace(sources.IDX_SOURCES["mnist"], train_count=TRAIN_N,
                                test_count=TEST_N, system_dir=None)
    monkeypatch.setitem(sources.IDX_SOURCES, "mnist", small)
    return small


@pytest.mark.parametrize("name", ["images.gz", "images"])
def test_read_idx_round_trip(tmp_path: Path, name: str) -> None:
    images, labels = random_split(30, 0)
    assert torch.equal(read_idx(write_idx(tmp_path / name, images)), images)
    assert torch.equal(read_idx(write_idx(tmp_path / f"l-{name}", labels)), labels.to(torch.uint8))


def test_read_idx_split_shapes(tmp_path: Path) -> None:
    images, labels = random_split(30, 0)
    x, y = read_idx_split(write_idx(tmp_path / "i.gz", images), write_idx(tmp_path / "l", labels),
                          count=30)
    assert x.shape == (30, 1, 28, 28) and x.dtype == torch.uint8
    assert y.dtype == torch.int64 and torch.equal(y, labels)


def test_truncated_raw_file_names_file(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(random_split(10, 0)[0])[:-7])
    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path)
    message = str(err.value)
    assert str(path) in message and "7849 bytes" in message and "implies 7856" in message


def test_truncated_gzip_names_file(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(random_split(10, 0)[0]))[:-40])
    with pytest.raises(DataError, match="gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_trailing_bytes_rejected(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(torch.zeros(5, dtype=torch.uint8)) + b"\0")
    with pytest.raises(DataError, match="longer than its header"):
        read_idx(path)


def test_wrong_magic_names_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", random_split(10, 0)[0],
                     magic=0x00000D03)
    with pytest.raises(DataError, match="magic number 0x00000d03") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_labels_where_images_expected(tmp_path: Path) -> None:
    images, labels = random_split(10, 0)
    swapped = write_idx(tmp_path / "imgs", labels)
    with pytest.raises(DataError, match="expected IDX images") as err:
        read_idx_split(swapped, write_idx(tmp_path / "labs", labels), count=None)
    assert str(swapped) in str(err.value)


def test_labels_out_of_range_names_file(tmp_path: Path) -> None:
    images, labels = random_split(10, 0)
    labels[3] = 12
    bad = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match="label 12 is out of range 0..9") as err:
        read_idx_split(write_idx(tmp_path / "i", images), bad, count=None)
    assert str(bad) in str(err.value)


def test_wrong_count_for_the_real_set(tmp_path: Path) -> None:
    images, labels = random_split(10, 0)
    with pytest.raises(DataError, match="10 samples, expected 60000"):
        read_idx_split(write_idx(tmp_path / "i", images), write_idx(tmp_path / "l", labels),
                       count=60000)


@pytest.mark.parametrize("raw_names", [False, True])
def test_load_from_root(tmp_path: Path, small_mnist: sources.IdxSource, raw_names: bool) -> None:
    tensors = write_set(tmp_path / "mnist", raw_names=raw_names)
    data = load_dataset(DataConfig(name="mnist", root=str(tmp_path), download=False), seed=0, progress=False)
    train_x, train_y, test_x, test_y = tensors.values()
    assert data.train_x.shape == (TRAIN_N, 1, 28, 28) and data.train_x.dtype == torch.float32
    assert torch.equal(data.train_y, train_y.long()) and torch.equal(data.test_y, test_y.long())
    norm = data.preprocessing["normalize"]
    mean, std = norm["mean"][0], norm["std"][0]
    assert torch.allclose(data.train_x[:, 0] * std + mean, train_x / 255, atol=1e-5)
    assert torch.allclose(data.test_x[:, 0] * std + mean, test_x / 255, atol=1e-5)
    assert abs(data.train_x.mean().item()) < 1e-4
    assert abs(data.train_x.std(correction=0).item() - 1) < 1e-4
    files = data.preprocessing["source"]["files"]
    first = tmp_path / "mnist" / ("train-images-idx3-ubyte" if raw_names else sources.IDX_FILES[0])
    assert files[0] == {"path": str(first.resolve()), "bytes": first.stat().st_size,
                        "md5": hashlib.md5(first.read_bytes()).hexdigest()}
    assert data.classes == tuple("0123456789") and data.num_classes == 10
    json.dumps(data.preprocessing)


def test_subset_is_balanced_and_seeded(tmp_path: Path, small_mnist: sources.IdxSource) -> None:
    write_set(tmp_path / "mnist")
    def load(seed: int):
        return load_dataset(DataConfig(name="mnist", root=str(tmp_path), download=False, train_size=20, test_size=10, normalize=False), seed=seed)
    a, b, c = load(0), load(0), load(1)
    assert torch.bincount(a.train_y).tolist() == [2] * 10
    assert torch.bincount(a.test_y).tolist() == [1] * 10
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_x, c.train_x)
    assert a.preprocessing["normalize"] is None and float(a.train_x.max()) <= 1.0
    assert a.preprocessing["subset"]["train_size"] == 20
    with pytest.raises(DataError, match="train_size = 41"):
        load_dataset(DataConfig(name="mnist", root=str(tmp_path), download=False, train_size=41), seed=0)


def test_root_from_environment(tmp_path: Path, small_mnist: sources.IdxSource,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    write_set(tmp_path / "env" / "mnist")
    monkeypatch.setenv("NCTUI_DATA", str(tmp_path / "env"))
    assert load_dataset(DataConfig(name="mnist", root=None, download=False), seed=0).train_y.numel() == TRAIN_N


def test_system_copy_used_after_root(tmp_path: Path, small_mnist: sources.IdxSource,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write_set(tmp_path / "system")
    monkeypatch.setitem(sources.IDX_SOURCES, "mnist",
                        dataclasses.replace(small_mnist, system_dir=tmp_path / "system"))
    data = load_dataset(DataConfig(name="mnist", root=str(tmp_path / "root"), download=False), seed=0)
    first = data.preprocessing["source"]["files"][0]["path"]
    assert first.startswith(str((tmp_path / "system").resolve()))


def test_missing_offline_lists_files_and_directory(tmp_path: Path,
                                                   small_mnist: sources.IdxSource) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name="mnist", root=str(tmp_path), download=False), seed=0)
    message = str(err.value)
    assert message.startswith("MNIST not found: put train-images-idx3-ubyte.gz, "
                              "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                              f"t10k-labels-idx1-ubyte.gz in {tmp_path / 'mnist'} "
                              "(from https://ossci-datasets.s3.amazonaws.com/mnist/)")
    assert "data.root / NCTUI_DATA" in message


def test_missing_offline_mentions_system_copy(tmp_path: Path, small_mnist: sources.IdxSource,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sources.IDX_SOURCES, "mnist",
                        dataclasses.replace(small_mnist, system_dir=tmp_path / "system"))
    with pytest.raises(DataError, match="also looked in .*system"):
        load_dataset(DataConfig(name="mnist", root=str(tmp_path / "root"), download=False), seed=0)


def test_missing_offline_lists_only_missing(tmp_path: Path, small_mnist: sources.IdxSource) -> None:
    write_set(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"put t10k-labels-idx1-ubyte\.gz in ") as err:
        load_dataset(DataConfig(name="mnist", root=str(tmp_path), download=False), seed=0)
    assert "train-images" not in str(err.value)


def _mirror(tmp_path: Path, small: sources.IdxSource, monkeypatch: pytest.MonkeyPatch,
            md5: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Serve a small set from a file:// mirror, after one dead mirror."""
    tensors = write_set(tmp_path / "mirror")
    real_md5 = {name: hashlib.md5((tmp_path / "mirror" / name).read_bytes()).hexdigest()
                for name in sources.IDX_FILES}
    mirrors = ((tmp_path / "dead").as_uri() + "/", (tmp_path / "mirror").as_uri() + "/")
    monkeypatch.setitem(sources.IDX_SOURCES, "mnist",
                        dataclasses.replace(small, mirrors=mirrors, md5=md5 or real_md5))
    return tensors


def test_download_from_file_mirror(tmp_path: Path, small_mnist: sources.IdxSource,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capfd: pytest.CaptureFixture[str]) -> None:
    tensors = _mirror(tmp_path, small_mnist, monkeypatch)
    root = tmp_path / "root"
    data = load_dataset(DataConfig(name="mnist", root=str(root), download=True, normalize=False), seed=0)
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(sources.IDX_FILES)
    assert torch.equal(data.train_x[:, 0], tensors[sources.IDX_FILES[0]] / 255)
    captured = capfd.readouterr()
    assert "train-images-idx3-ubyte.gz" in captured.err and captured.out == ""


def test_download_wrong_checksum_keeps_nothing(tmp_path: Path, small_mnist: sources.IdxSource,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {name: "0" * 32 for name in sources.IDX_FILES}
    _mirror(tmp_path, small_mnist, monkeypatch, md5=expected)
    actual = hashlib.md5((tmp_path / "mirror" / sources.IDX_FILES[0]).read_bytes()).hexdigest()
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name="mnist", root=str(tmp_path / "root"), download=True), seed=0, progress=False)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert f"expected md5 {'0' * 32}, got {actual}" in message
    assert message.endswith(f"MNIST still lacks {', '.join(sources.IDX_FILES)} "
                            f"in {tmp_path / 'root' / 'mnist'}")
    assert list((tmp_path / "root" / "mnist").iterdir()) == []
