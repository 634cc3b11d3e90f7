"""Temperature scaling: make a model's probabilities match how often it is right.

Label smoothing, weight averaging and mirror test-time augmentation all lower
the probability a network gives its top class, so a model that is right 97%
of the time may give its top class 60%. Dividing the log-probabilities by one temperature
fitted on held-out photos fixes most of this and never changes which class
comes first (temperature scaling: Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017, who scale the logits of a single view). The
fitted value is stored as ``temperature`` in model.json; evaluation and the
`Predictor` apply it, so accuracy and F1 are unchanged and only the shown
probabilities move.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ml.checkpoints import load_checkpoint, read_description, write_description
from ml.evaluation import predict_logits, probabilities_from_logits
from ml.metrics import expected_calibration_error, negative_log_likelihood
from ml.runtime import configure_threads, resolve_device

logger = logging.getLogger(__name__)

# Search range of the temperature; the served model's is 0.365.
TEMPERATURE_RANGE = (0.05, 20.0)
# NOTE: an estimate, not a measurement. With fewer validation photos the fitted temperature
# follows a handful of errors, so the temperature stays 1.
MIN_CALIBRATION_IMAGES = 100


def fit_temperature(logits: torch.Tensor, labels: np.ndarray) -> float:
    """Return the temperature that minimises the negative log-likelihood of `labels`.

    `logits` has shape (views, images, classes), as `predict_logits` returns
    it; the temperature scales the views' averaged probabilities, as at
    inference. The negative log-likelihood is convex in 1 / temperature (a
    log-sum-exp minus a linear term), so it has a single minimum, which a
    golden-section search on the logarithm of the temperature finds.
    """
    labels = np.asarray(labels)

    def loss(log_temperature: float) -> float:
        return negative_log_likelihood(probabilities_from_logits(logits, math.exp(log_temperature)), labels)

    low, high = (math.log(bound) for bound in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    for _ in range(60):
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    return round(math.exp((low + high) / 2), 4)


def calibration_report(logits: torch.Tensor, labels: np.ndarray, temperature: float) -> dict:
    """Return the negative log-likelihood and calibration error before (temperature 1) and after scaling."""
    before = probabilities_from_logits(logits, 1.0)
    after = probabilities_from_logits(logits, temperature)
    return {
        "temperature": temperature,
        "images": len(labels),
        "nll_before": round(negative_log_likelihood(before, labels), 4),
        "nll_after": round(negative_log_likelihood(after, labels), 4),
        "ece_before": round(expected_calibration_error(before, labels), 4),
        "ece_after": round(expected_calibration_error(after, labels), 4),
        "mean_confidence_before": round(float(before.max(axis=1).mean()), 4),
        "mean_confidence_after": round(float(after.max(axis=1).mean()), 4),
        "accuracy": round(float((before.argmax(axis=1) == labels).mean()), 4),
    }


def calibrate_network(model: nn.Module, dataset, device: torch.device, tta: bool, batch_size: int = 128) -> dict:
    """Fit the temperature of `model` on `dataset` (validation photos) and report its effect."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    logits, labels = predict_logits(model, loader, device, tta)
    if len(labels) < MIN_CALIBRATION_IMAGES:
        report = calibration_report(logits, labels, 1.0)
        report["skipped"] = (
            f"only {len(labels)} validation images; a temperature is fitted from {MIN_CALIBRATION_IMAGES}, "
            "so it stays 1"
        )
        return report
    return calibration_report(logits, labels, fit_temperature(logits, labels))


def store_calibration(model_dir: str | Path, report: dict, split_seed: int) -> None:
    """Write the temperature and its report into model.json; the weights are untouched."""
    description = read_description(model_dir)
    description["temperature"] = report["temperature"]
    description["calibration"] = {**report, "split": "val", "split_seed": split_seed}
    write_description(Path(model_dir), description)
    if "skipped" in report:
        logger.info("temperature not fitted: %s", report["skipped"])
        return
    logger.info(
        "temperature %.3f: validation NLL %.4f -> %.4f, calibration error %.4f -> %.4f",
        report["temperature"], report["nll_before"], report["nll_after"], report["ece_before"], report["ece_after"],
    )  # fmt: skip


def calibrate(model_dir: str | Path, data_dir: str | Path | None = None, device: str = "auto") -> dict:
    """Fit and store the temperature of a saved model on the validation split it was trained with.

    `data_dir` overrides the dataset path in the model's training config. The
    photos must be the ones it was trained on (same dataset fingerprint), or
    the validation split would hold photos the model learned from.
    """
    from ml.averaging import training_split

    torch_device = resolve_device(device)
    configure_threads()
    model, description = load_checkpoint(model_dir, torch_device)
    config, data = training_split(description, data_dir)
    report = calibrate_network(model, data.val, torch_device, bool(description.get("tta", True)))
    store_calibration(model_dir, report, config.effective_split_seed)
    return report
