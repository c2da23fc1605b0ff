"""Data trouble: files missing while offline, a download with the wrong checksum, truncated or
corrupt IDX files. Each is exit 2 with what is wrong and what to do, before any run directory."""

from __future__ import annotations

import dataclasses
import gzip
import struct
from pathlib import Path

import pytest
from click.testing import Result

from faults.helpers import assert_one_line_error
from nctui.data import sources
from run_fixtures import invoke

REDO = "delete it and put a good copy there (or let nctui download it)"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data root, and MNIST without the system-wide copy a machine might have."""
    monkeypatch.setenv("NCTUI_DATA", str(tmp_path / "data"))
    monkeypatch.setitem(sources.IDX_SOURCES, "mnist",
                        dataclasses.replace(sources.IDX_SOURCES["mnist"], system_dir=tmp_path / "no-system-copy"))
    return tmp_path / "data"


def run_mnist(root: Path, *settings: str) -> Result:
    result = invoke("run", "mnist_fc", "--headless", "--out", str(root.parent / "runs"), *settings)
    assert not (root.parent / "runs").exists()   # nothing started, no run directory
    return result


def idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload


def write_mnist(directory: Path, train_images: bytes, train_images_name: str = "train-images-idx3-ubyte") -> None:
    """The four MNIST files, uncompressed but for `train_images` (as given, under the name given):
    good headers, labels all 0, pixels 0."""
    directory.mkdir(parents=True)
    names = [name.removesuffix(".gz") for name in sources.IDX_FILES]
    (directory / train_images_name).write_bytes(train_images)
    (directory / names[1]).write_bytes(idx(0x801, (60000,), bytes(60000)))
    (directory / names[2]).write_bytes(idx(0x803, (10000, 28, 28), bytes(10000 * 784)))
    (directory / names[3]).write_bytes(idx(0x801, (10000,), bytes(10000)))


def test_missing_files_offline_say_where_to_put_which(root: Path) -> None:
    result = run_mnist(root, "--set", "data.download=false")
    assert_one_line_error(result, 2, f"MNIST not found: put {', '.join(sources.IDX_FILES)} in {root / 'mnist'} (from "
                          f"{sources.IDX_SOURCES['mnist'].mirrors[0]}), or set data.root / NCTUI_DATA, "
                          "or allow data.download")


def test_cifar_missing_offline(root: Path) -> None:
    result = invoke("run", "cifar10_cnn", "--headless", "--out", str(root.parent / "runs"),
                    "--set", "data.download=false")
    assert_one_line_error(result, 2, f"CIFAR-10 not found: put cifar-10-binary.tar.gz (from "
                          f"{sources.CIFAR10.urls[0]}) or its extracted cifar-10-batches-bin/ in {root / 'cifar10'}")


def test_a_download_with_the_wrong_checksum_is_not_kept(root: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in sources.IDX_FILES:
        (mirror / name).write_bytes(gzip.compress(b"not mnist"))
    monkeypatch.setitem(sources.IDX_SOURCES, "mnist",
                        dataclasses.replace(sources.IDX_SOURCES["mnist"], mirrors=(mirror.as_uri() + "/",)))
    result = run_mnist(root)
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.stderr
    first = sources.IDX_FILES[0]
    assert result.stderr.startswith(f"nctui: error: could not download {first} into {root / 'mnist'}:\n")
    assert (f"{mirror.as_uri()}/{first}: wrong checksum for {first}: expected md5 "
            f"{sources.IDX_SOURCES['mnist'].md5[first]}, got ") in result.stderr
    assert "(the file was not kept)\nPut the file there by hand, or set data.root / NCTUI_DATA." in result.stderr
    assert result.stderr.endswith(f"MNIST still lacks {', '.join(sources.IDX_FILES)} in {root / 'mnist'}\n")
    assert list((root / "mnist").iterdir()) == []   # no partial or wrong file under a real name


def test_a_truncated_idx_file_names_itself_and_what_to_do(root: Path) -> None:
    write_mnist(root / "mnist", idx(0x803, (60000, 28, 28), bytes(1000)))
    result = run_mnist(root, "--set", "data.download=false")
    assert_one_line_error(result, 2, f"{root / 'mnist' / 'train-images-idx3-ubyte'}: truncated: 1016 bytes "
                          f"(uncompressed) but the header 60000x28x28 implies 47040016; {REDO}")


def test_a_truncated_gzip_names_itself_and_what_to_do(root: Path) -> None:
    images = gzip.compress(idx(0x803, (60000, 28, 28), bytes(60000 * 784)))
    write_mnist(root / "mnist", images[:len(images) // 2], sources.IDX_FILES[0])
    result = run_mnist(root, "--set", "data.download=false")
    assert_one_line_error(result, 2, f"{root / 'mnist' / sources.IDX_FILES[0]}: corrupt or truncated gzip data (",
                          REDO)
