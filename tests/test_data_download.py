"""The downloader: mirrors in order, MD5 check, progress bar, atomic rename, no partial files."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

import nctui.data.download as download_module
from nctui.data import DataError
from nctui.data.download import download

PAYLOAD = bytes(range(256)) * 9000  # a bit over 2 MiB: several chunks


@pytest.fixture
def served(tmp_path: Path) -> tuple[str, str]:
    """A file:// URL serving PAYLOAD, and its MD5."""
    path = tmp_path / "served" / "blob.gz"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path.as_uri(), hashlib.md5(PAYLOAD).hexdigest()


def test_correct_md5_lands_with_progress(tmp_path: Path, served: tuple[str, str],
                                         capfd: pytest.CaptureFixture[str]) -> None:
    url, md5 = served
    dest = tmp_path / "data" / "mnist" / "blob.gz"
    assert download([url], dest, md5, progress=True) == dest
    assert dest.read_bytes() == PAYLOAD
    assert list(dest.parent.iterdir()) == [dest]
    captured = capfd.readouterr()
    assert "blob.gz" in captured.err and "2.3" in captured.err and captured.out == ""


def test_falls_back_to_next_mirror(tmp_path: Path, served: tuple[str, str]) -> None:
    url, md5 = served
    dead = (tmp_path / "nowhere" / "blob.gz").as_uri()
    dest = tmp_path / "out" / "blob.gz"
    download([dead, url], dest, md5, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_wrong_md5_names_both_and_keeps_nothing(tmp_path: Path, served: tuple[str, str]) -> None:
    url, md5 = served
    dest = tmp_path / "out" / "blob.gz"
    wrong = "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    with pytest.raises(DataError) as err:
        download([url], dest, wrong, progress=False)
    assert f"wrong checksum for blob.gz: expected md5 {wrong}, got {md5}" in str(err.value)
    assert list(dest.parent.iterdir()) == []


def test_all_mirrors_failing_are_listed(tmp_path: Path) -> None:
    dead = [(tmp_path / f"nowhere{i}" / "blob.gz").as_uri() for i in (1, 2)]
    with pytest.raises(DataError, match="could not download blob.gz into") as err:
        download(dead, tmp_path / "out" / "blob.gz", "0" * 32, progress=False)
    assert all(url in str(err.value) for url in dead)
    assert "data.root / NCTUI_DATA" in str(err.value)


class _Dropping(io.BytesIO):
    """A response that breaks off mid-stream, like a dropped connection."""

    headers = {"Content-Length": str(len(PAYLOAD))}

    def read(self, size: int = -1) -> bytes:
        if self.tell() >= 1 << 20:
            raise ConnectionResetError(104, "Connection reset by peer")
        return super().read(size)


def test_interrupted_download_leaves_no_partial_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download_module.urllib.request, "urlopen",
                        lambda url, timeout: _Dropping(PAYLOAD))
    dest = tmp_path / "out" / "blob.gz"
    with pytest.raises(DataError, match="Connection reset by peer"):
        download(["https://mirror.invalid/blob.gz"], dest, hashlib.md5(PAYLOAD).hexdigest(),
                 progress=True)
    assert list(dest.parent.iterdir()) == []
