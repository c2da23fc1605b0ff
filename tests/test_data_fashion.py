"""Real Fashion-MNIST from Debian's dataset-fashion-mnist (re-compressed: checked by structure)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from nctui.config import DataConfig
from nctui.data import load_dataset, sources

SYSTEM_DIR = sources.IDX_SOURCES["fashion_mnist"].system_dir

pytestmark = pytest.mark.skipif(
    SYSTEM_DIR is None or not all((SYSTEM_DIR / name).is_file() for name in sources.IDX_FILES),
    reason=f"real Fashion-MNIST not installed in {SYSTEM_DIR} (apt install dataset-fashion-mnist)")


def test_real_fashion_mnist(tmp_path: Path) -> None:
    start = time.perf_counter()
    data = load_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path), download=False), seed=0, progress=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and data.train_x.device.type == "cpu"
    assert torch.bincount(data.train_y).tolist() == [6000] * 10
    assert torch.bincount(data.test_y).tolist() == [1000] * 10
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    # the well-known statistics of Fashion-MNIST's training pixels
    norm = data.preprocessing["normalize"]
    assert norm["mean"][0] == pytest.approx(0.2860, abs=1e-3)
    assert norm["std"][0] == pytest.approx(0.3530, abs=1e-3)
    files = data.preprocessing["source"]["files"]
    assert files[0]["path"] == str(SYSTEM_DIR / "train-images-idx3-ubyte.gz")
    assert not any(tmp_path.iterdir())  # nothing written to the data root
