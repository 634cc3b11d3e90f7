"""Measure training images per second with and without a data-loading process.

Runs real training steps of the default recipe (EfficientNet-Lite2, batch 64,
128 px, AdamW) on AHE's training photos, in rounds, so that a noisy machine
affects every setting alike:

    .venv/bin/python benchmarks/training_loader.py --data ../shared/datasets/ahe --rounds 3

Settings: `worker` loads batches in one DataLoader process (the default,
`--workers 1`), `main` in the training process (`--workers 0`), and
`tensors` feeds random tensors, which is the network's own speed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.config import TrainConfig
from ml.models import create_model, model_normalization
from ml.training import build_optimizer, prepare_data

SETTINGS = (("worker", 2), ("main", 2), ("tensors", 2), ("worker", 1))


def images_per_second(model, optimizer, scheduler, loss_fn, dataset, source: str, threads: int, batches: int) -> float:
    """Time `batches` training steps after one warm-up step."""
    torch.set_num_threads(threads)
    if source == "tensors":
        batch = (torch.randn(64, 3, 128, 128), torch.randint(0, 10, (64,)))
        iterator = iter([batch] * (batches + 1))
    else:
        workers = 1 if source == "worker" else 0
        loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, num_workers=workers, drop_last=True)
        iterator = iter(loader)
    next(iterator)

    started, seen = time.perf_counter(), 0
    for _ in range(batches):
        images, targets = next(iterator)
        images = images.contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss.item()
        seen += len(targets)
    return seen / (time.perf_counter() - started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset root with train/<class>/")
    parser.add_argument("--rounds", type=int, default=3, help="times each setting is measured")
    parser.add_argument("--batches", type=int, default=10, help="timed training steps per measurement")
    args = parser.parse_args(argv)

    config = TrainConfig(data_dir=args.data, out_dir="unused", seed=1)
    mean, std = model_normalization(create_model(config.backbone, 2, pretrained=False))
    data = prepare_data(config, mean, std)
    model = create_model(config.backbone, len(data.class_names)).to(memory_format=torch.channels_last).train()
    optimizer, scheduler = build_optimizer(model, config, steps_per_epoch=len(data.train) // 64)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    results: dict[tuple[str, int], list[float]] = {}
    for round_number in range(1, args.rounds + 1):
        for source, threads in SETTINGS:
            rate = images_per_second(model, optimizer, scheduler, loss_fn, data.train, source, threads, args.batches)
            results.setdefault((source, threads), []).append(rate)
            print(f"round {round_number}: {source:<7} {threads} threads {rate:6.1f} images/s", flush=True)
    for (source, threads), rates in results.items():
        print(f"{source:<7} {threads} threads: median {statistics.median(rates):.1f} images/s over {len(rates)} rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
