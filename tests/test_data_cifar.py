"""CIFAR-10 binary: reading batches, extracting only the known members, errors, download."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import torch

from nctui.config import DataConfig
from nctui.data import DataError, load_dataset, sources
from nctui.data.cifar import MEMBER_DIR, MEMBERS, TEST_BATCH, TRAIN_BATCHES, read_batch

PER_BATCH = 4
CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def make_batch(seed: int, n: int = PER_BATCH) -> tuple[bytes, torch.Tensor, torch.Tensor]:
    """n records in the real format: label byte, then 1024 R, 1024 G, 1024 B bytes."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=gen)
    data = b"".join(bytes([int(label)]) + bytes(image.flatten().tolist())
                    for image, label in zip(images, labels))
    return data, images, labels


def add(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE,
        link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def make_archive(path: Path, *, hostile: bool = False, skip: str = "") -> dict[str, tuple]:
    """A tiny cifar-10-binary.tar.gz with the real member names (and, if asked, hostile ones)."""
    batches = {name: make_batch(i) for i, name in enumerate((*TRAIN_BATCHES, TEST_BATCH))}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        if hostile:
            add(tar, "../evil", b"pwned")
            add(tar, f"{MEMBER_DIR}/../../evil2", b"pwned")
            add(tar, str(path.parent / "evil3"), b"pwned")
            add(tar, f"{MEMBER_DIR}/data_batch_1.bin", b"", tarfile.SYMTYPE, "/etc/passwd")
            add(tar, f"{MEMBER_DIR}/evil4.bin", b"pwned")
        for name, (data, _, _) in batches.items():
            if name != skip:
                add(tar, f"{MEMBER_DIR}/{name}", data)
        add(tar, f"{MEMBER_DIR}/batches.meta.txt", ("\n".join(CLASSES) + "\n\n").encode())
    return batches


@pytest.fixture
def small_cifar(monkeypatch: pytest.MonkeyPatch) -> sources.CifarSource:
    small = dataclasses.replace(sources.CIFAR10, records_per_batch=PER_BATCH)
    monkeypatch.setattr(sources, "CIFAR10", small)
    return small


def test_read_batch_channel_major(tmp_path: Path) -> None:
    data, images, labels = make_batch(0)
    (tmp_path / "b.bin").write_bytes(data)
    x, y = read_batch(tmp_path / "b.bin", records=PER_BATCH)
    assert torch.equal(x, images) and torch.equal(y, labels) and y.dtype == torch.int64
    assert x[0, 1, 0, 0] == data[1 + 1024]  # green plane starts after 1024 red bytes


def test_load_from_archive(tmp_path: Path, small_cifar: sources.CifarSource) -> None:
    batches = make_archive(tmp_path / "cifar10" / "cifar-10-binary.tar.gz")
    data = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False, normalize=False), seed=0)
    assert data.train_x.shape == (5 * PER_BATCH, 3, 32, 32) and data.test_x.shape == (4, 3, 32, 32)
    train_images = torch.cat([batches[name][1] for name in TRAIN_BATCHES])
    assert torch.equal(data.train_x, train_images / 255)
    assert torch.equal(data.test_y, batches[TEST_BATCH][2])
    assert data.classes == CLASSES and data.num_classes == 10
    extracted = sorted(p.name for p in (tmp_path / "cifar10" / MEMBER_DIR).iterdir())
    assert extracted == sorted(MEMBERS)
    assert len(data.preprocessing["source"]["files"]) == 6


def test_normalised_per_channel(tmp_path: Path, small_cifar: sources.CifarSource) -> None:
    make_archive(tmp_path / "cifar10" / "cifar-10-binary.tar.gz")
    data = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False), seed=0)
    assert len(data.preprocessing["normalize"]["mean"]) == 3
    mean = data.train_x.mean(dim=(0, 2, 3))
    std = data.train_x.std(dim=(0, 2, 3), correction=0)
    assert torch.allclose(mean, torch.zeros(3), atol=1e-5)
    assert torch.allclose(std, torch.ones(3), atol=1e-5)


def test_hostile_members_never_extracted(tmp_path: Path, small_cifar: sources.CifarSource) -> None:
    root = tmp_path / "deep" / "root"
    batches = make_archive(root / "cifar10" / "cifar-10-binary.tar.gz", hostile=True)
    data = load_dataset(DataConfig(name="cifar10", root=str(root), download=False, normalize=False), seed=0)
    assert not [p for p in tmp_path.rglob("evil*")]
    first = root / "cifar10" / MEMBER_DIR / "data_batch_1.bin"
    assert not first.is_symlink() and first.read_bytes() == batches["data_batch_1.bin"][0]
    assert torch.equal(data.train_y[:PER_BATCH], batches["data_batch_1.bin"][2])


def test_archive_missing_member(tmp_path: Path, small_cifar: sources.CifarSource) -> None:
    archive = tmp_path / "cifar10" / "cifar-10-binary.tar.gz"
    make_archive(archive, skip="data_batch_3.bin")
    with pytest.raises(DataError, match=f"lacks {MEMBER_DIR}/data_batch_3.bin") as err:
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False), seed=0)
    assert str(archive) in str(err.value)


def test_garbage_archive_names_file(tmp_path: Path, small_cifar: sources.CifarSource) -> None:
    archive = tmp_path / "cifar10" / "cifar-10-binary.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(b"\x1f\x8b" + b"not really gzip" * 10)
    with pytest.raises(DataError, match="not a readable tar.gz archive") as err:
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False), seed=0)
    assert str(archive) in str(err.value)


def _extracted(tmp_path: Path) -> Path:
    batches = tmp_path / "cifar10" / MEMBER_DIR
    batches.mkdir(parents=True)
    for i, name in enumerate((*TRAIN_BATCHES, TEST_BATCH)):
        (batches / name).write_bytes(make_batch(i)[0])
    return batches


def test_truncated_batch(tmp_path: Path, small_cifar: sources.CifarSource) -> None:
    test_batch = _extracted(tmp_path) / TEST_BATCH
    test_batch.write_bytes(test_batch.read_bytes()[:-100])
    with pytest.raises(DataError, match="not a whole number of 3073-byte records") as err:
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False), seed=0)
    assert str(test_batch) in str(err.value)


def test_wrong_record_count(tmp_path: Path, small_cifar: sources.CifarSource) -> None:
    batch = _extracted(tmp_path) / "data_batch_2.bin"
    batch.write_bytes(make_batch(9, n=3)[0])
    with pytest.raises(DataError, match="3 records, expected 4") as err:
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False), seed=0)
    assert str(batch) in str(err.value)


def test_real_count_demanded_by_default(tmp_path: Path) -> None:
    _extracted(tmp_path)
    with pytest.raises(DataError, match="4 records, expected 10000"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False), seed=0)


def test_missing_offline(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False), seed=0)
    assert str(err.value).startswith(
        "CIFAR-10 not found: put cifar-10-binary.tar.gz (from "
        "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz) or its extracted "
        f"cifar-10-batches-bin/ in {tmp_path / 'cifar10'}")


def test_download_then_extract(tmp_path: Path, small_cifar: sources.CifarSource,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "mirror" / "cifar-10-binary.tar.gz"
    batches = make_archive(served)
    md5 = hashlib.md5(served.read_bytes()).hexdigest()
    monkeypatch.setattr(sources, "CIFAR10",
                        dataclasses.replace(small_cifar, urls=(served.as_uri(),), md5=md5))
    data = load_dataset(DataConfig(name="cifar10", root=str(tmp_path / "root"), download=True), seed=0, progress=False)
    kept = tmp_path / "root" / "cifar10" / "cifar-10-binary.tar.gz"
    assert kept.read_bytes() == served.read_bytes()
    assert torch.equal(data.test_y, batches[TEST_BATCH][2])
