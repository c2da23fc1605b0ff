"""Where the real data sets come from: official files, mirrors and MD5s (copied from DATA.md).

Never invent a checksum here: a wrong one breaks every real user's first run. The tables are
plain frozen dataclasses so tests can substitute small files, local mirrors and their own MD5s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The four IDX files of MNIST and Fashion-MNIST, in the order train images, train labels,
# test images, test labels. Local copies may also be stored un-gzipped (name without .gz).
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class IdxSource:
    """An IDX data set: where to look for it, where to fetch it, what it must contain."""

    name: str                   # data set name, also the directory under the data root
    title: str                  # for messages
    mirrors: tuple[str, ...]    # base URLs, tried in order
    md5: dict[str, str]         # file name (as in IDX_FILES) -> MD5 of the official download
    classes: tuple[str, ...]
    system_dir: Path | None     # a distribution's copy, looked up after the data root
    train_count: int = 60000
    test_count: int = 10000


@dataclass(frozen=True)
class CifarSource:
    """CIFAR-10, binary version: one archive whose batch files are read directly."""

    name: str
    title: str
    urls: tuple[str, ...]
    archive: str                # file name of the archive under <root>/<name>/
    md5: str                    # MD5 of the official archive
    classes: tuple[str, ...]
    records_per_batch: int = 10000


IDX_SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        name="mnist",
        title="MNIST",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        classes=tuple(str(digit) for digit in range(10)),
        system_dir=Path("/usr/share/datasets/mnist"),
    ),
    "fashion_mnist": IdxSource(
        name="fashion_mnist",
        title="Fashion-MNIST",
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        # Debian's dataset-fashion-mnist (re-compressed: validated by structure, not MD5)
        system_dir=Path("/usr/share/datasets/fashion-mnist"),
    ),
}

CIFAR10 = CifarSource(
    name="cifar10",
    title="CIFAR-10",
    urls=("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
    archive="cifar-10-binary.tar.gz",
    md5="c32a1d4ab5d03f1284b67883e8d87530",
    classes=("airplane", "automobile", "bird", "cat", "deer",
             "dog", "frog", "horse", "ship", "truck"),
)
