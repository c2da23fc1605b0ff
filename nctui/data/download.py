"""Fetch one file from a list of mirrors, checksummed, never leaving a partial file behind.

The bytes go to a hidden temporary name beside the destination, are hashed while streaming,
fsynced, and only renamed to the real name when the MD5 matches: an interrupted or corrupted
download can never be mistaken for the data set on the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from nctui.data.errors import DataError

CHUNK = 1 << 20
TIMEOUT_S = 60.0


def file_md5(path: Path) -> str:
    """MD5 of a file, streamed (the data files are too large to hash in one read)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar() -> Any:
    """A rich download bar on stderr (stdout may carry JSONL)."""
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True))


def _stream(url: str, out: BinaryIO, label: str, progress: bool) -> str:
    """Copy `url` into `out`, showing a bar if asked; returns the MD5 of what was written."""
    digest = hashlib.md5()
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = _progress_bar() if progress else None
        with bar if bar is not None else contextlib.nullcontext():
            task = bar.add_task(label, total=total) if bar is not None else None
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                if bar is not None:
                    bar.advance(task, len(chunk))
    return digest.hexdigest()


def temp_beside(dest: Path) -> Path:
    """A fresh hidden name next to `dest` (same file system, so the final rename is atomic)."""
    return dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")


def _fetch_one(url: str, dest: Path, progress: bool) -> tuple[Path, str]:
    """Download into a temporary file beside `dest`; returns (temp path, its MD5)."""
    tmp = temp_beside(dest)
    try:
        with open(tmp, "xb") as out:
            actual = _stream(url, out, dest.name, progress)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, actual


def download(urls: Sequence[str], dest: Path, md5: str, *, progress: bool = True) -> Path:
    """Fetch `dest` from the first of `urls` that serves bytes with MD5 `md5`.

    Raises DataError naming every mirror and why it failed; a file with the wrong checksum is
    deleted, never kept under the real name.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create {dest.parent} ({err.strerror}): "
                        "set data.root / NCTUI_DATA to a writable directory") from None
    failures: list[str] = []
    for url in urls:
        try:
            tmp, actual = _fetch_one(url, dest, progress)
        except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as err:
            reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
            failures.append(f"{url}: {reason}")
            continue
        if actual == md5:
            os.replace(tmp, dest)
            return dest
        tmp.unlink()
        failures.append(f"{url}: wrong checksum for {dest.name}: expected md5 {md5}, "
                        f"got {actual} (the file was not kept)")
    tried = "\n  ".join(failures) or "no mirror given"
    raise DataError(f"could not download {dest.name} into {dest.parent}:\n  {tried}\n"
                    f"Put the file there by hand, or set data.root / NCTUI_DATA.")
