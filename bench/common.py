"""What every bench script needs: a preset (with overrides) and its data, loaded as `nctui run` does."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nctui.config import Config, load_config
from nctui.data import Dataset, load_dataset

PRESETS = Path(__file__).resolve().parent.parent / "presets"
MNIST_FC_SYNTHETIC = ["data.name=synthetic", "data.synthetic.train_per_class=6000",
                      "data.synthetic.test_per_class=1000"]   # MNIST-shaped: 60k train, 10k test


def arguments(description: str) -> argparse.ArgumentParser:
    """The options every bench script takes: --preset, --set, --device, --threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", required=True, help="preset name (presets/NAME.yaml) or a YAML path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as `nctui run --set` (repeatable)")
    parser.add_argument("--synthetic-mnist", action="store_true",
                        help="MNIST-shaped synthetic data (6000 + 1000 per class) instead of the preset's")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch intra-op threads, the same for every variant (default: torch's)")
    return parser


def load(args: argparse.Namespace) -> tuple[Config, Dataset]:
    """The resolved config (device forced to --device) and its data set, on the CPU."""
    torch.set_num_threads(args.threads)
    path = Path(args.preset)
    if not path.exists():
        path = PRESETS / f"{args.preset}.yaml"
    extra = (MNIST_FC_SYNTHETIC if args.synthetic_mnist else []) + args.overrides + [f"train.device={args.device}"]
    cfg = load_config(path, extra)
    data = load_dataset(cfg.data, cfg.seed, progress=False)
    return cfg, data


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock read after it counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
