"""Measure the default model's speed and memory next to a plain timm forward pass.

Prints single-image latency (median and p95, JPEG decoding and
preprocessing included), batch throughput, training throughput and peak
memory, for our Predictor and for the bare timm network on random tensors.
The ratio column is ours divided by plain timm; our inference includes
mirror test-time augmentation when the model uses it, so expect about 2x.
"""

from __future__ import annotations

import io
import resource
import statistics
import time

import numpy as np
import timm
import torch
from PIL import Image

from ml.inference import Predictor
from ml.models import timm_architecture
from ml.runtime import configure_threads, resolve_device


def _photo_bytes(side: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    # Smooth noise compresses like a photo rather than like static.
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _timings(function, repeats: int) -> list[float]:
    function()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return times


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


SIDES = (64, 1024, 4000)  # photo sides for single-image latency: AHE test size to 16 megapixels


def measure_predictor(predictor: Predictor, repeats: int, batch: int, sides=SIDES) -> dict:
    results = {}
    for side in sides:
        data = _photo_bytes(side)
        times = _timings(lambda data=data: predictor.predict([data]), repeats if side < 4000 else max(3, repeats // 5))
        results[f"latency_{side}px_ms"] = (
            1000 * statistics.median(times),
            1000 * float(np.percentile(times, 95)),
        )
    images = [_photo_bytes(64, seed) for seed in range(batch)]
    times = _timings(lambda: predictor.predict(images), 3)
    results["batch_images_per_s"] = batch / statistics.median(times)
    return results


def measure_plain(
    architecture: str, num_classes: int, size: int, device, repeats: int, batch: int, networks: int = 1
) -> dict:
    """Time bare timm forward passes: `networks` copies, one after another, as an ensemble runs."""
    models = [timm.create_model(architecture, num_classes=num_classes).to(device).eval() for _ in range(networks)]
    single = torch.randn(1, 3, size, size, device=device)
    many = torch.randn(batch, 3, size, size, device=device)

    def forward(x):
        with torch.inference_mode():
            for model in models:
                model(x)
        _sync(device)

    times = _timings(lambda: forward(single), repeats)
    batch_times = _timings(lambda: forward(many), 3)
    return {
        "latency_ms": (1000 * statistics.median(times), 1000 * float(np.percentile(times, 95))),
        "batch_images_per_s": batch / statistics.median(batch_times),
    }


def measure_training(model: torch.nn.Module, size: int, device, channels_last: bool, batch: int = 32) -> float:
    model = model.to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, size, size, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (batch,), device=device)

    def step():
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _sync(device)

    return batch / statistics.median(_timings(step, 4))


def run_benchmarks(model_dir=None, repeats: int = 30, device: str = "auto", sides=SIDES) -> None:
    torch_device = resolve_device(device)
    threads = configure_threads()
    predictor = Predictor(model_dir, device=str(torch_device))
    description = predictor.description
    size, classes = description["image_size"], len(predictor.class_names)
    architecture = timm_architecture(description["backbone"])
    networks = description.get("ensemble_size", 1)
    batch = 64

    kind = f"ensemble of {networks} x {architecture}" if networks > 1 else architecture
    print(f"model {predictor.version} ({kind}, {size} px input, TTA {predictor.tta})")
    print(f"device {torch_device}, {threads} threads, torch {torch.__version__}; {repeats} repeats, medians")
    ours = measure_predictor(predictor, repeats, batch, sides)
    rss_inference = _peak_rss_mib()
    plain = measure_plain(architecture, classes, size, torch_device, repeats, batch, networks)
    # An ensemble's networks are trained one at a time, so time one of them.
    trained = predictor.model.members[0] if networks > 1 else predictor.model
    train_ours = measure_training(trained, size, torch_device, channels_last=True)
    train_plain = measure_training(
        timm.create_model(architecture, num_classes=classes), size, torch_device, channels_last=False
    )

    if networks > 1:
        print(f"plain timm runs {networks} networks in turn; training figures are for one network")
    print(f"{'figure':<44}{'ours':>12}{'plain timm':>14}{'ratio':>8}")
    for side in sides:
        median, p95 = ours[f"latency_{side}px_ms"]
        print(
            f"{f'single image {side}x{side} JPEG, median ms':<44}{median:12.1f}{plain['latency_ms'][0]:14.1f}{median / plain['latency_ms'][0]:8.2f}"
        )
        print(
            f"{f'single image {side}x{side} JPEG, p95 ms':<44}{p95:12.1f}{plain['latency_ms'][1]:14.1f}{p95 / plain['latency_ms'][1]:8.2f}"
        )
    print(
        f"{f'batch of {batch}, images/s':<44}{ours['batch_images_per_s']:12.1f}{plain['batch_images_per_s']:14.1f}{ours['batch_images_per_s'] / plain['batch_images_per_s']:8.2f}"
    )
    print(
        f"{'training step, batch 32, images/s':<44}{train_ours:12.1f}{train_plain:14.1f}{train_ours / train_plain:8.2f}"
    )
    print(
        f"peak resident memory: {rss_inference:.0f} MiB after inference, {_peak_rss_mib():.0f} MiB after training steps"
    )
    if torch_device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
