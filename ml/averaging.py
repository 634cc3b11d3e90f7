"""Combine runs that share a validation split: weight averages and ensembles.

Runs fine-tuned from the same ImageNet weights, differing only in their seed,
often sit in one basin of the loss. The mean of their weights (a "uniform
soup", Wortsman et al., ICML 2022) can then score as well as averaging their
predictions, at the cost of one model. The mean of batch-norm statistics is
not the statistics of the mean model, so `recalibrate_batch_norm` can
estimate them again from augmented training images. Measured on AHE with two
Lite2 runs, the averaged statistics scored higher on validation, so
re-estimation is off unless asked for.

`compare_on_validation` scores each member, the ensemble of their
probabilities and the weight average on the validation split that every
member held out, so the choice between them never looks at the test set.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ml.checkpoints import load_checkpoint, save_checkpoint
from ml.config import TrainConfig
from ml.errors import CheckpointError, ConfigError
from ml.evaluation import predict_probabilities
from ml.metrics import classification_report
from ml.models import Ensemble
from ml.runtime import configure_threads, resolve_device, seed_everything

logger = logging.getLogger(__name__)

# Fields that members must agree on: the same network, classes and
# preprocessing, trained on the same files with the same validation split.
SHARED_FIELDS = ("backbone", "class_names", "image_size", "source_size", "mean", "std", "dataset_fingerprint")
KEEP_CHOICES = ("average", "ensemble")


def member_config(description: dict) -> TrainConfig:
    """Return the training config of a member, which fixes its validation split."""
    name = description.get("model_version", "?")
    if not isinstance(description.get("config"), dict):
        raise CheckpointError(f"model {name} has no training config, so its validation split is unknown")
    try:
        return TrainConfig.from_dict(description["config"])
    except (ConfigError, TypeError) as error:
        raise CheckpointError(f"model {name} has an unreadable training config ({error})") from error


def training_split(description: dict, data_dir: str | Path | None = None, load_train: bool = False):
    """Return the training config of a saved model and its dataset, split as in its training run.

    `data_dir` overrides the dataset path in the config. Raise CheckpointError
    when the photos differ from the ones the model was trained on (another
    dataset fingerprint), because its validation split would then hold
    photos it learned from.
    """
    from ml.training import prepare_data

    config = member_config(description)
    if data_dir is not None:
        config = replace(config, data_dir=str(data_dir))
    data = prepare_data(config, description["mean"], description["std"], load_train=load_train)
    if data.fingerprint != description.get("dataset_fingerprint"):
        raise CheckpointError(
            f"dataset at {config.data_dir} has fingerprint {data.fingerprint}, "
            f"but training used {description.get('dataset_fingerprint')}"
        )
    return config, data


def check_compatible(descriptions: list[dict]) -> None:
    """Raise CheckpointError naming the first field on which the members differ."""
    if len(descriptions) < 2:
        raise CheckpointError("averaging needs at least two models")
    for description in descriptions:
        if description.get("ensemble_size", 1) > 1:
            raise CheckpointError(
                f"model {description.get('model_version', '?')} is already an ensemble; "
                "combine the single runs it was built from instead"
            )
    configs = [member_config(description) for description in descriptions]
    if any(config.mode != "finetune" for config in configs):
        raise CheckpointError("only fine-tuned models can be averaged; a linear probe's backbone is not trained")
    first, first_config = descriptions[0], configs[0]
    for other, config in zip(descriptions[1:], configs[1:]):
        name = other.get("model_version", "?")
        for field in SHARED_FIELDS:
            if other.get(field) != first.get(field):
                raise CheckpointError(
                    f"model {name} differs from {first.get('model_version', '?')} in {field}: "
                    f"{other.get(field)!r} against {first.get(field)!r}"
                )
        if config.effective_split_seed != first_config.effective_split_seed:
            raise CheckpointError(
                f"model {name} held out another validation split (split seed {config.effective_split_seed} "
                f"against {first_config.effective_split_seed}); train the members with the same --split-seed"
            )
        if config.val_fraction != first_config.val_fraction:
            raise CheckpointError(
                f"model {name} held out another share of train/ "
                f"({config.val_fraction} against {first_config.val_fraction})"
            )


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of every floating-point tensor; integer counters are taken from the first state."""
    averaged = {}
    for key, first in states[0].items():
        if first.dtype.is_floating_point:
            averaged[key] = torch.stack([state[key].float() for state in states]).mean(dim=0).to(first.dtype)
        else:
            averaged[key] = first.clone()
    return averaged


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, loader, device: torch.device) -> int:
    """Re-estimate every batch-norm layer's running mean and variance; return the images seen.

    The statistics are reset and then averaged over all of `loader` with equal
    weight per batch (momentum None), in training mode, without any weight update.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    seen = 0
    for images, _ in loader:
        model(images.to(device).contiguous(memory_format=torch.channels_last))
        seen += len(images)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
    return seen


def _scores(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    report = classification_report(labels.tolist(), probabilities.argmax(axis=1).tolist(), class_names)
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "per_class_f1": {name: report["per_class"][name]["f1"] for name in class_names},
    }


def compare_on_validation(
    model_dirs: list[str | Path],
    data_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    recalibrate: bool = False,
    device: str = "auto",
    seed: int = 0,
    keep: str = "average",
) -> dict:
    """Score members, their ensemble and their weight average on the shared validation split.

    `data_dir` overrides the dataset path stored in the members' config. When
    `out_dir` is given, the weight average (`keep="average"`) or the ensemble
    (`keep="ensemble"`) is saved there with its validation scores. Returns
    "rows" (name, accuracy, macro_f1 and per_class_f1 of each candidate),
    "val_images", "split_seed" and "out_dir".
    """
    if keep not in KEEP_CHOICES:
        raise ConfigError(f"keep must be one of {', '.join(KEEP_CHOICES)}, got {keep!r}")
    torch_device = resolve_device(device)
    configure_threads()
    seed_everything(seed)
    loaded = [load_checkpoint(path, torch_device) for path in model_dirs]
    descriptions = [description for _, description in loaded]
    check_compatible(descriptions)
    first = descriptions[0]
    class_names = first["class_names"]
    config, data = training_split(first, data_dir, load_train=recalibrate)
    tta = bool(first.get("tta", True))
    val_loader = torch.utils.data.DataLoader(data.val, batch_size=128, shuffle=False)

    rows = []
    labels = np.asarray(data.val.labels)

    def score(name: str, model: nn.Module) -> np.ndarray:
        """Add a row for `model` and return its validation probabilities."""
        probabilities, _ = predict_probabilities(model, val_loader, torch_device, tta)
        rows.append({"name": name, **_scores(probabilities, labels, class_names)})
        return probabilities

    member_probabilities = []
    for (model, description), path in zip(loaded, model_dirs):
        member_probabilities.append(score(f"{description['model_version']} ({path})", model))
    ensemble = np.mean(member_probabilities, axis=0)
    rows.append({"name": f"ensemble of {len(loaded)} (mean probability)", **_scores(ensemble, labels, class_names)})

    averaged = copy.deepcopy(loaded[0][0])
    averaged.load_state_dict(average_states([model.state_dict() for model, _ in loaded]))
    score("weight average, averaged batch-norm statistics", averaged)
    calibrated_on = 0
    if recalibrate:
        train_loader = torch.utils.data.DataLoader(
            data.train, batch_size=config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
        calibrated_on = recalibrate_batch_norm(averaged, train_loader, torch_device)
        score("weight average, batch norm re-estimated", averaged)

    result = {"rows": rows, "val_images": len(labels), "split_seed": config.effective_split_seed, "out_dir": None}
    if out_dir is not None:
        if keep == "ensemble":
            saved, scores = Ensemble([model for model, _ in loaded]), rows[len(loaded)]
        else:
            saved, scores = averaged, rows[-1]
        description = _combined_description(descriptions, keep, calibrated_on, scores)
        result["out_dir"] = str(save_checkpoint(saved, description, out_dir))
    return result


def _combined_description(descriptions: list[dict], keep: str, calibrated_on: int, scores: dict) -> dict:
    # A member's temperature was fitted to that member, not to the combination.
    dropped = ("weights_file", "weights_sha256", "model_version", "created_at", "history", "best_epoch")
    dropped += ("temperature", "calibration")
    description = {key: value for key, value in descriptions[0].items() if key not in dropped}
    description["combined_from"] = [
        {"model_version": d["model_version"], "seed": d["config"]["seed"], "best_epoch": d.get("best_epoch")}
        for d in descriptions
    ]
    description["combination"] = "ensemble" if keep == "ensemble" else "weight average"
    if keep == "ensemble":
        description["ensemble_size"] = len(descriptions)
    else:
        description["batch_norm_recalibration_images"] = calibrated_on
    description["metrics"] = {"val": {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}}
    return description


def format_comparison(result: dict) -> str:
    rows = result["rows"]
    class_names = list(rows[0]["per_class_f1"])
    lines = [
        f"validation split (seed {result['split_seed']}, {result['val_images']} images)",
        f"{'model':<58} {'accuracy':>8} {'macro-F1':>8}  " + " ".join(f"{name[:8]:>8}" for name in class_names),
    ]
    for row in rows:
        lines.append(
            f"{row['name'][:58]:<58} {row['accuracy']:>8.4f} {row['macro_f1']:>8.4f}  "
            + " ".join(f"{row['per_class_f1'][name]:>8.3f}" for name in class_names)
        )
    if result["out_dir"]:
        lines.append(f"saved to {result['out_dir']}")
    return "\n".join(lines)
