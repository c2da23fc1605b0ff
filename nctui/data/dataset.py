"""load_dataset: find (or fetch) the files, read them strictly, subset, normalise, record how.

Everything a run needs to reproduce its inputs goes into `Dataset.preprocessing` (files read
with their sizes and MD5s, subset sizes and seed, the mean/std applied, the synthetic recipe),
which the trainer writes into run.json.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch

from nctui.data import cifar, idx, sources
from nctui.data.download import download as fetch
from nctui.data.download import file_md5
from nctui.data.errors import DataError
from nctui.data.seeding import balanced_indices, seeded_generator
from nctui.data.synthetic import GENERATOR_VERSION, SyntheticSpec, make_synthetic

if TYPE_CHECKING:   # config imports data; data only reads the section's fields
    from nctui.config import DataConfig

NAMES = ("synthetic", "mnist", "fashion_mnist", "cifar10")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Both splits as CPU tensors, ready to train on, and how they were made."""

    name: str                 # "synthetic" | "mnist" | "fashion_mnist" | "cifar10"
    train_x: torch.Tensor     # float32 (N, C_in, H, W), already normalised
    train_y: torch.Tensor     # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    classes: tuple[str, ...]
    preprocessing: dict       # JSON-able; everything needed to reproduce the inputs


class _Raw(NamedTuple):
    """A data set as read: uint8 pixels (or synthetic floats), before subsetting and scaling."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    source: dict


def data_root(root: str | None) -> Path:
    """The data directory: `root`, else $NCTUI_DATA, else ~/.cache/nctui/data."""
    chosen = root or os.environ.get("NCTUI_DATA") or "~/.cache/nctui/data"
    return Path(chosen).expanduser()


def _file_record(path: Path) -> dict:
    """What was read, so a run can tell later whether its inputs changed."""
    return {"path": str(path.resolve()), "bytes": path.stat().st_size, "md5": file_md5(path)}


def _find_idx_files(directory: Path) -> dict[str, Path | None]:
    """Each IDX file in `directory`, gzipped or not; None where it is absent."""
    found: dict[str, Path | None] = {}
    for name in sources.IDX_FILES:
        candidates = (directory / name, directory / name.removesuffix(".gz"))
        found[name] = next((p for p in candidates if p.is_file()), None)
    return found


def _load_idx(source: sources.IdxSource, root: Path, download: bool, progress: bool) -> _Raw:
    """MNIST / Fashion-MNIST from the data root, the system copy, or the mirrors."""
    home = root / source.name
    places = [home] + ([source.system_dir] if source.system_dir is not None else [])
    for place in places:
        found = _find_idx_files(place)
        if all(found.values()):
            break
    else:
        found = _find_idx_files(home)
        missing = [name for name, path in found.items() if path is None]
        if not download:
            also = "".join(f" (also looked in {p})" for p in places[1:])
            raise DataError(f"{source.title} not found: put {', '.join(missing)} in {home} "
                            f"(from {source.mirrors[0]}), or set data.root / NCTUI_DATA, "
                            f"or allow data.download{also}")
        for i, name in enumerate(missing):
            try:
                fetch([mirror + name for mirror in source.mirrors], home / name,
                      source.md5[name], progress=progress)
            except DataError as err:
                raise DataError(f"{err}\n{source.title} still lacks "
                                f"{', '.join(missing[i:])} in {home}") from None
        found = _find_idx_files(home)
    paths = [found[name] for name in sources.IDX_FILES]
    train_x, train_y = idx.read_idx_split(paths[0], paths[1], count=source.train_count,
                                          num_classes=len(source.classes))
    test_x, test_y = idx.read_idx_split(paths[2], paths[3], count=source.test_count,
                                        num_classes=len(source.classes))
    return _Raw(train_x, train_y, test_x, test_y, source.classes,
                {"files": [_file_record(p) for p in paths]})


def _load_cifar(source: sources.CifarSource, root: Path, download: bool, progress: bool) -> _Raw:
    """CIFAR-10 from extracted batches, else from the archive, else downloaded."""
    home = root / source.name
    batches = home / cifar.MEMBER_DIR
    needed = (*cifar.TRAIN_BATCHES, cifar.TEST_BATCH)
    if not all((batches / name).is_file() for name in needed):
        archive = home / source.archive
        if not archive.is_file():
            if not download:
                raise DataError(f"{source.title} not found: put {source.archive} (from "
                                f"{source.urls[0]}) or its extracted {cifar.MEMBER_DIR}/ in "
                                f"{home}, or set data.root / NCTUI_DATA, or allow data.download")
            fetch(source.urls, archive, source.md5, progress=progress)
        cifar.extract_members(archive, batches)
    train = [cifar.read_batch(batches / name, records=source.records_per_batch)
             for name in cifar.TRAIN_BATCHES]
    test_x, test_y = cifar.read_batch(batches / cifar.TEST_BATCH, records=source.records_per_batch)
    classes = cifar.read_class_names(batches / cifar.META, source.classes)
    return _Raw(torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), test_x, test_y,
                classes, {"files": [_file_record(batches / name) for name in needed]})


def _load_synthetic(spec: SyntheticSpec, seed: int) -> _Raw:
    """The embedded data set; its recipe and seed are its whole source."""
    train_x, train_y, test_x, test_y = make_synthetic(spec, seed)
    classes = tuple(str(c) for c in range(spec.num_classes))
    return _Raw(train_x, train_y, test_x, test_y, classes,
                {"generator": "nctui.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
                 "spec": dataclasses.asdict(spec)})


def load_dataset(spec: DataConfig, seed: int, progress: bool = True) -> Dataset:
    """Load the data set a config's `data` section names, ready to train on (CPU tensors).

    DataError says what to fix. `progress` shows a download bar on stderr.
    """
    name, root, download = spec.name, spec.root, spec.download
    train_size, test_size, normalize, synthetic = spec.train_size, spec.test_size, spec.normalize, spec.synthetic
    if name == "synthetic":
        raw = _load_synthetic(synthetic or SyntheticSpec(), seed)
    elif name in sources.IDX_SOURCES:
        raw = _load_idx(sources.IDX_SOURCES[name], data_root(root), download, progress)
    elif name == "cifar10":
        raw = _load_cifar(sources.CIFAR10, data_root(root), download, progress)
    else:
        raise DataError(f"unknown data set {name!r}: choose one of {', '.join(NAMES)}")
    num_classes = len(raw.classes)
    train_x, train_y, test_x, test_y = raw.train_x, raw.train_y, raw.test_x, raw.test_y
    if train_size is not None:
        keep = balanced_indices(train_y, num_classes, train_size,
                               seeded_generator(seed, "train-subset"), "data.train_size")
        train_x, train_y = train_x[keep], train_y[keep]
    if test_size is not None:
        keep = balanced_indices(test_y, num_classes, test_size,
                               seeded_generator(seed, "test-subset"), "data.test_size")
        test_x, test_y = test_x[keep], test_y[keep]
    scaled = train_x.dtype == torch.uint8
    if scaled:
        train_x, test_x = train_x.float().div_(255), test_x.float().div_(255)
    norm = None
    if normalize:
        std, mean = torch.std_mean(train_x, dim=(0, 2, 3), correction=0)
        std = std.clamp_min(1e-6)
        shape = (1, -1, 1, 1)
        train_x = train_x.sub_(mean.view(shape)).div_(std.view(shape))
        test_x = test_x.sub_(mean.view(shape)).div_(std.view(shape))
        norm = {"mean": mean.tolist(), "std": std.tolist(),
                "of": "the training set, after subsetting and scaling, per channel"}
    preprocessing = {
        "dataset": name,
        "source": raw.source,
        "input_shape": list(train_x.shape[1:]),
        "scale": "uint8 pixels / 255" if scaled else "none (synthetic values)",
        "subset": {"train_size": train_size, "test_size": test_size, "seed": seed,
                   "method": "class-balanced; per class a torch.randperm seeded by "
                             "sha256('<seed>:train-subset' / '<seed>:test-subset')"},
        "normalize": norm,
        "train_per_class": torch.bincount(train_y, minlength=num_classes).tolist(),
        "test_per_class": torch.bincount(test_y, minlength=num_classes).tolist(),
    }
    return Dataset(name, train_x, train_y, test_x, test_y,
                   num_classes, raw.classes, preprocessing)
