"""Data sets as CPU tensors: MNIST and Fashion-MNIST (IDX), CIFAR-10 (binary), synthetic.

May import torch and the standard library (rich only for the download bar).
"""

from __future__ import annotations

from nctui.data.dataset import Dataset, data_root, load_dataset
from nctui.data.errors import DataError
from nctui.data.idx import read_idx
from nctui.data.seeding import balanced_indices, seeded_generator
from nctui.data.synthetic import SyntheticSpec

__all__ = ["DataError", "Dataset", "SyntheticSpec", "balanced_indices", "data_root", "load_dataset", "read_idx",
           "seeded_generator"]
