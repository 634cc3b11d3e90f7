"""Device choice, thread counts and seeding."""

from __future__ import annotations

import logging
import os
import random
import re

import numpy as np
import torch

from ml.errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """Return CUDA when asked for or available under "auto", else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but no CUDA GPU is available")
    return torch.device(name)


def configure_threads(data_workers: int = 0) -> int:
    """Give PyTorch one thread per core not taken by data-loading processes.

    Honours OMP_NUM_THREADS when the user set it. Returns the thread count.
    """
    if "OMP_NUM_THREADS" in os.environ:
        threads = torch.get_num_threads()
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores - max(0, data_workers - 1))
        torch.set_num_threads(threads)
    return threads


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
