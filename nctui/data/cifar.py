"""CIFAR-10, binary version: safe extraction of the known members, strict batch reader.

Only the seven known members are ever taken from the archive, each written under a name we
choose (never a path from the archive), so a hostile tarball cannot write anywhere else.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zlib
from pathlib import Path

import torch

from nctui.data.download import temp_beside
from nctui.data.errors import DataError

MEMBER_DIR = "cifar-10-batches-bin"
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCH = "test_batch.bin"
META = "batches.meta.txt"
MEMBERS = (*TRAIN_BATCHES, TEST_BATCH, META)
SIDE = 32
RECORD = 1 + 3 * SIDE * SIDE  # one label byte, then 1024 red, 1024 green, 1024 blue bytes


def extract_members(archive: Path, dest: Path) -> None:
    """Extract exactly the regular files `cifar-10-batches-bin/{MEMBERS}` into `dest`."""
    wanted = {f"{MEMBER_DIR}/{name}": name for name in MEMBERS}
    dest.mkdir(parents=True, exist_ok=True)
    done: set[str] = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = wanted.get(member.name)
                if name is None or name in done or not member.isreg():
                    continue
                source = tar.extractfile(member)
                tmp = temp_beside(dest / name)
                try:
                    with open(tmp, "xb") as out:
                        shutil.copyfileobj(source, out)
                    os.replace(tmp, dest / name)
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
                done.add(name)
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise DataError(f"{archive}: not a readable tar.gz archive ({err}); delete it and put "
                        "a good copy there (or let nctui download it)") from None
    except OSError as err:
        raise DataError(f"extracting {archive} into {dest} failed ({err})") from None
    missing = [f"{MEMBER_DIR}/{name}" for name in MEMBERS if name not in done]
    if missing:
        raise DataError(f"{archive}: not the CIFAR-10 binary archive: lacks {', '.join(missing)}")


def read_batch(path: Path, *, records: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch file as (uint8 images (N, 3, 32, 32), int64 labels (N,)).

    `records` is the count each real batch has (None: any, for small test files).
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    n, rest = divmod(len(data), RECORD)
    if rest or n == 0:
        raise DataError(f"{path}: {len(data)} bytes is not a whole number of {RECORD}-byte "
                        "records (1 label + 3072 pixels): truncated, or not the binary "
                        "CIFAR-10; delete it and extract it again")
    if records is not None and n != records:
        raise DataError(f"{path}: {n} records, expected {records}; delete it and extract it again")
    table = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(n, RECORD)
    labels = table[:, 0].long()
    if int(labels.max()) > 9:
        raise DataError(f"{path}: label {int(labels.max())} is out of range 0..9")
    return table[:, 1:].reshape(n, 3, SIDE, SIDE), labels


def read_class_names(path: Path, default: tuple[str, ...]) -> tuple[str, ...]:
    """Class names from batches.meta.txt (one a line); `default` if it is absent or odd."""
    try:
        names = tuple(line.strip() for line in path.read_text("utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError):
        return default
    return names if len(names) == len(default) else default
