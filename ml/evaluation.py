"""Evaluate a saved model on a dataset split and compare with published scores."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ml.checkpoints import load_checkpoint
from ml.data import content_fingerprint, list_split, load_images
from ml.metrics import classification_report, expected_calibration_error
from ml.runtime import configure_threads, resolve_device
from ml.transforms import EvalTransform, ImageListDataset

logger = logging.getLogger(__name__)


@torch.inference_mode()
def predict_logits(model: nn.Module, loader, device: torch.device, tta: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Return (logits, labels) for every batch of `loader`.

    The logits have shape (views, images, classes) on the CPU: one view, or
    two with mirror test-time augmentation (the image, then its mirror image).
    """
    model.eval()
    views, labels = [], []
    for images, targets in loader:
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            batch = [model(images).float()]
            if tta:
                batch.append(model(torch.flip(images, dims=[3])).float())
        views.append(torch.stack(batch).cpu())
        labels.append(np.asarray(targets))
    return torch.cat(views, dim=1), np.concatenate(labels)


def apply_temperature(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soften (above 1) or sharpen (below 1) each row of probabilities, keeping their order.

    The result is proportional to probabilities ** (1 / temperature), the
    softmax of the log-probabilities divided by the temperature. Scaling the
    averaged prediction rather than each view's logits means the top class
    never changes, with or without test-time augmentation.
    """
    if temperature == 1.0:
        return probabilities
    return (probabilities.clamp_min(1e-12).log() / temperature).softmax(dim=-1)


def probabilities_from_logits(logits: torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """Average the softmax of each view's logits, then apply `temperature`."""
    return apply_temperature(logits.softmax(dim=2).mean(dim=0), temperature).numpy()


def predict_probabilities(
    model: nn.Module, loader, device: torch.device, tta: bool, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Return (softmax probabilities, labels) for every batch of `loader`."""
    logits, labels = predict_logits(model, loader, device, tta)
    return probabilities_from_logits(logits, temperature), labels


def evaluate(
    model_dir: str | Path,
    data_dir: str | Path,
    split: str = "test",
    batch_size: int = 64,
    tta: bool = True,
    device: str = "auto",
    exclude: set[str] | None = None,
) -> dict:
    """Score a saved model on one split of a dataset.

    `exclude` contains paths relative to `data_dir` to leave out, for example
    test images with a near-duplicate in train. Returns the metrics of
    `ml.metrics.classification_report` plus `samples`, one entry per image
    with its true and predicted class, and `split_fingerprint`, a hash of the
    scored photos' contents and labels (`ml.reference.is_ahe_test_split`).
    """
    torch_device = resolve_device(device)
    configure_threads()
    model, description = load_checkpoint(model_dir, torch_device)
    class_names = description["class_names"]

    data_root = Path(data_dir)
    split_data = list_split(data_root, split, class_names)
    samples = [
        sample for sample in split_data.samples if not exclude or str(sample.path.relative_to(data_root)) not in exclude
    ]
    max_bad = max(20, len(samples) // 100)
    images, labels, bad = load_images(samples, max_bad=max_bad, max_side=max(description["image_size"], 256))
    bad_paths = set(bad)
    readable = [sample for sample in samples if sample.path not in bad_paths]
    present = set(labels)
    absent = [name for label, name in enumerate(class_names) if label not in present]
    if absent:
        logger.warning(
            "no readable %s images of %s: their F1 of 0 counts in macro-F1", split, ", ".join(absent)
        )  # fmt: skip

    dataset = ImageListDataset(images, labels, EvalTransform.from_description(description))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    logger.info(
        "scoring %s on %d %s images (%d unreadable skipped), TTA %s, on %s",
        description.get("model_version", model_dir), len(images), split, len(bad), "on" if tta else "off", torch_device,
    )  # fmt: skip
    started = time.perf_counter()
    temperature = float(description.get("temperature", 1.0))
    probabilities, true = predict_probabilities(model, loader, torch_device, tta, temperature)
    predicted = probabilities.argmax(axis=1)
    logger.info("scored %d images in %.0f s", len(images), time.perf_counter() - started)

    report = classification_report(true.tolist(), predicted.tolist(), class_names)
    report["split"] = split
    report["split_fingerprint"] = content_fingerprint(samples, class_names)
    report["tta"] = tta
    report["temperature"] = temperature
    report["calibration_error"] = expected_calibration_error(probabilities, true)
    report["skipped_unreadable"] = [str(path.relative_to(data_root)) for path in bad]
    report["samples"] = [
        {
            "path": str(sample.path.relative_to(data_root)),
            "true": class_names[int(label)],
            "pred": class_names[int(guess)],
            "confidence": float(probabilities[i, guess]),
        }
        for i, (sample, label, guess) in enumerate(zip(readable, true, predicted))
    ]
    return report


def read_near_duplicates(data_dir: str | Path) -> set[str]:
    """Return test paths listed in near_duplicates_train_test.tsv, if the file exists."""
    path = Path(data_dir) / "near_duplicates_train_test.tsv"
    if not path.is_file():
        return set()
    paths = set()
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) >= 2 and columns[1].startswith("test/"):
            paths.add(columns[1])
    return paths
