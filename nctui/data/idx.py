"""IDX files (MNIST, Fashion-MNIST): a strict reader, and the shape checks for the real sets.

Local files are trusted only after their structure checks out (magic, dimensions, a length
that matches the header exactly, labels in range); not their MD5, because distributions
re-compress them (Debian's Fashion-MNIST gzip bytes differ from the official ones).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import torch

from nctui.data.errors import DataError

UBYTE = 0x08
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
SIDE = 28
_REFETCH = "delete it and put a good copy there (or let nctui download it)"


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when it is gzip data (whatever its name says)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip data ({err}); {_REFETCH}") from None


def read_idx(path: str | Path) -> torch.Tensor:
    """An unsigned-byte IDX file (gzipped or raw) as a uint8 tensor shaped as its header says."""
    path = Path(path)
    data = read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: only {len(data)} bytes, not an IDX file; {_REFETCH}")
    (magic,) = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    if magic >> 8 != UBYTE or ndim == 0:
        raise DataError(f"{path}: magic number 0x{magic:08x} is not an unsigned-byte IDX file "
                        f"(expected 0x{IMAGES_MAGIC:08x} images or 0x{LABELS_MAGIC:08x} labels)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated inside its header; {_REFETCH}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + math.prod(dims)
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{path}: {what}: {len(data)} bytes (uncompressed) but the header "
                        f"{'x'.join(map(str, dims))} implies {expected}; {_REFETCH}")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=header).reshape(dims)


def read_idx_split(images_path: Path, labels_path: Path, *, count: int | None,
                   num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as (uint8 images (N, 1, 28, 28), int64 labels (N,)), checked for shape.

    `count` is the number of samples the real data set has (None: any, for small test files).
    """
    images = read_idx(images_path)
    if images.dim() != 3 or tuple(images.shape[1:]) != (SIDE, SIDE):
        raise DataError(f"{images_path}: expected IDX images (magic 0x{IMAGES_MAGIC:08x}, "
                        f"N x {SIDE} x {SIDE}), got shape {'x'.join(map(str, images.shape))}")
    labels = read_idx(labels_path)
    if labels.dim() != 1:
        raise DataError(f"{labels_path}: expected IDX labels (magic 0x{LABELS_MAGIC:08x}, one "
                        f"dimension), got shape {'x'.join(map(str, labels.shape))}")
    for path, n in ((images_path, images.shape[0]), (labels_path, labels.shape[0])):
        if count is not None and n != count:
            raise DataError(f"{path}: {n} samples, expected {count}; {_REFETCH}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path} has {images.shape[0]} images but {labels_path} has "
                        f"{labels.shape[0]} labels; they must come from the same split")
    if labels.numel() and int(labels.max()) >= num_classes:
        raise DataError(f"{labels_path}: label {int(labels.max())} is out of range "
                        f"0..{num_classes - 1}; {_REFETCH}")
    return images.unsqueeze(1), labels.long()
