"""Transfer learning: fine-tune or linear-probe an ImageNet backbone.

Reads top to bottom: `prepare_data`, `build_optimizer`, `train_one_epoch`,
`validate`, then `fit`, which ties them together, keeps the checkpoint with
the best validation macro-F1 and stops early when it no longer improves.
The test split is never read here.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ml.calibration import calibrate_network, store_calibration
from ml.checkpoints import load_checkpoint, save_checkpoint
from ml.config import TrainConfig
from ml.data import (
    check_classes_have_images,
    deduplicate,
    fingerprint,
    list_split,
    load_images,
    stratified_split,
)
from ml.errors import ConfigError, DatasetError, TrainingError
from ml.evaluation import predict_probabilities
from ml.metrics import classification_report
from ml.models import create_model, model_normalization
from ml.runtime import configure_threads, resolve_device, seed_everything
from ml.transforms import EvalTransform, ImageListDataset, train_transform

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[dict], None]
StopCallback = Callable[[], bool]


@dataclass
class PreparedData:
    class_names: list[str]
    train: ImageListDataset | None  # None when prepared with load_train=False
    val: ImageListDataset
    fingerprint: str
    stats: dict


@dataclass
class FitResult:
    model_dir: Path | None
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    cancelled: bool = False
    stopped_early: bool = False
    val_metrics: dict | None = None
    calibration: dict | None = None  # ml.calibration's report for the saved model
    seconds: float = 0.0


class Cancelled(Exception):
    """Raised inside the training loop when should_stop() returns True."""


def prepare_data(config: TrainConfig, mean, std, load_train: bool = True) -> PreparedData:
    """Read train/, de-duplicate it and carve out a stratified validation split.

    With `load_train=False` only the validation photos are decoded and
    `train` is None, for callers that score saved runs on their split.
    """
    root = Path(config.data_dir)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    listed = list_split(root, "train")
    check_classes_have_images(listed.class_names, [sample.label for sample in listed.samples], "train")
    unique = deduplicate(listed)
    train_samples, val_samples = stratified_split(unique.samples, config.val_fraction, config.effective_split_seed)

    # Images are kept in memory at most twice the input size: AHE is 128 px,
    # but a dataset of camera photos would not fit otherwise.
    max_side = config.image_size * 2
    if load_train:
        train_images, train_labels, bad_train = load_images(train_samples, config.max_bad_images, max_side)
    else:
        train_images, train_labels, bad_train = None, [sample.label for sample in train_samples], []
    val_images, val_labels, bad_val = load_images(val_samples, config.max_bad_images - len(bad_train), max_side)
    check_classes_have_images(listed.class_names, train_labels, "train (after the validation split)")

    stats = {
        "train_files": len(listed.samples),
        "duplicates_removed": unique.duplicates_removed,
        "conflicting_removed": unique.conflicting_removed,
        "unreadable": [str(path.relative_to(root)) for path in bad_train + bad_val],
        "train_images": len(train_labels),
        "val_images": len(val_images),
    }
    logger.info("dataset %s: %s", root, stats)
    eval_transform = EvalTransform(config.image_size, config.source_size, mean, std, config.val_jpeg_quality)
    return PreparedData(
        class_names=listed.class_names,
        train=(
            ImageListDataset(train_images, train_labels, train_transform(config, mean, std)) if load_train else None
        ),
        val=ImageListDataset(val_images, val_labels, eval_transform),
        fingerprint=fingerprint(unique.digests, root),
        stats=stats,
    )


def build_optimizer(model: nn.Module, config: TrainConfig, steps_per_epoch: int):
    """AdamW without weight decay on biases and norms, warm-up then cosine decay."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
    )
    total_steps = max(1, config.epochs * steps_per_epoch)
    warmup_steps = min(int(config.warmup_epochs * steps_per_epoch), total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class WeightAverage:
    """An exponential moving average of a model's weights and batch-norm statistics.

    The decay ramps up over the first updates, min(decay, (1 + n) / (10 + n)),
    so the average does not hold on to the untrained head for long.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        for name, average in self.model.state_dict().items():
            if average.dtype.is_floating_point:
                average.lerp_(current[name], 1 - decay)
            else:
                average.copy_(current[name])


class CutMix:
    """CutMix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers", ICCV 2019).

    In a `prob` share of batches, one random box, the same for the whole
    batch, is copied into each image from another image of the batch. The
    box covers a share of the image drawn from Beta(alpha, alpha), clipped
    at the image's edges, and the loss gives each label its share of the area.
    Draws come from a NumPy generator of its own, so runs without CutMix keep
    the random state they had before it existed and repeat exactly.
    """

    def __init__(self, prob: float, alpha: float, seed: int):
        self.prob = prob
        self.alpha = alpha
        self.rng = np.random.default_rng(seed)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """Return (images, order, own_share): image i contains a box of image order[i], and
        own_share is the share of each image left as it was. A batch left alone comes
        back with order None and own_share 1."""
        if self.rng.random() >= self.prob:
            return images, None, 1.0
        count, _, height, width = images.shape
        side = math.sqrt(1.0 - self.rng.beta(self.alpha, self.alpha))
        box_height, box_width = int(height * side), int(width * side)
        centre_y, centre_x = int(self.rng.integers(height)), int(self.rng.integers(width))
        top, bottom = max(0, centre_y - box_height // 2), min(height, centre_y + box_height // 2)
        left, right = max(0, centre_x - box_width // 2), min(width, centre_x + box_width // 2)
        order = torch.from_numpy(self.rng.permutation(count)).to(images.device)
        mixed = images.clone()
        mixed[:, :, top:bottom, left:right] = images[order, :, top:bottom, left:right]
        own_share = 1.0 - (bottom - top) * (right - left) / (height * width)
        return mixed, order, own_share


def freeze_backbone(model: nn.Module) -> None:
    """Leave only the classifier trainable, for the linear-probe mode."""
    classifier = model.get_classifier()
    for parameter in model.parameters():
        parameter.requires_grad = False
    for parameter in classifier.parameters():
        parameter.requires_grad = True


def set_train_mode(model: nn.Module, mode: str) -> None:
    model.train()
    if mode == "linear-probe":
        # Batch-norm statistics of a frozen backbone must stay the ImageNet ones.
        model.eval()
        model.get_classifier().train()


def train_one_epoch(
    model,
    loader,
    optimizer,
    scheduler,
    loss_fn,
    device,
    config,
    epoch,
    on_progress,
    should_stop,
    average=None,
    teacher=None,
    cutmix=None,
) -> dict:
    """Train for one pass over `loader`; return the mean loss and the time taken.

    `average`, a WeightAverage or None, is updated after every batch.
    `teacher`, a network in eval mode or None, scores the same augmented
    batch as the student, and config.distill_weight of the loss is spent
    matching its outputs. `cutmix`, a CutMix or None, mixes batches before
    the networks see them, the teacher included.
    """
    set_train_mode(model, config.mode)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    started = time.perf_counter()
    total_loss, seen = 0.0, 0
    for batch_index, (images, targets) in enumerate(loader, start=1):
        if should_stop():
            raise Cancelled
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        order, own_share = None, 1.0
        if cutmix is not None:
            images, order, own_share = cutmix(images)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(images)
            loss = loss_fn(logits, targets)
            if order is not None:
                loss = own_share * loss + (1.0 - own_share) * loss_fn(logits, targets[order])
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(images)
                matching = distillation_loss(logits, teacher_logits, config.distill_temperature)
                loss = (1 - config.distill_weight) * loss + config.distill_weight * matching
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            # One step on a NaN or infinite loss would spoil every weight, so stop before it.
            # The best epoch saved so far stays on disk.
            raise TrainingError(
                f"training loss became {loss_value} in epoch {epoch}, batch {batch_index}, so training stopped. "
                "Lower the learning rate and train again."
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if average is not None:
            average.update(model)

        total_loss += loss_value * len(targets)
        seen += len(targets)
        on_progress(
            {
                "phase": "train",
                "epoch": epoch,
                "epochs": config.epochs,
                "batch": batch_index,
                "batches": len(loader),
                "loss": total_loss / seen,
            }
        )
    return {"train_loss": total_loss / max(1, seen), "train_seconds": time.perf_counter() - started}


def validate(model, dataset, device, config, class_names) -> dict:
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size * 2, shuffle=False)
    probabilities, labels = predict_probabilities(model, loader, device, config.tta)
    return classification_report(labels.tolist(), probabilities.argmax(axis=1).tolist(), class_names)


def load_related_model(
    path: str, role: str, config: TrainConfig, data: PreparedData, mean, std
) -> tuple[nn.Module, dict]:
    """Load the model at `path` that this run starts from or learns from, and check it.

    `role` is the config field that named it: "init_from" (the weights to
    continue from) or "teacher" (the predictions to learn from). Both must
    share the classes, the training photos and the validation split, so that
    validation never scores photos the model trained on. A starting model must
    also be one network of the same backbone. A teacher may be an ensemble or
    have another backbone, but it must take the same input size and
    normalisation. Raise ConfigError naming each difference.
    """
    model, description = load_checkpoint(path)
    problems = []
    if role == "init_from" and description.get("ensemble_size", 1) != 1:
        problems.append("it is an ensemble, not one network")
    if role == "init_from" and description["backbone"] != config.backbone:
        problems.append(f"its backbone is {description['backbone']!r}, not {config.backbone!r}")
    if role == "teacher":
        theirs = (description.get("image_size"), list(description.get("mean", [])), list(description.get("std", [])))
        ours = (config.image_size, list(mean), list(std))
        if theirs != ours:
            problems.append(
                f"it takes {theirs[0]} px input normalised with mean {theirs[1]} and std {theirs[2]}, "
                f"this run {ours[0]} px with mean {ours[1]} and std {ours[2]}"
            )
    if description["class_names"] != data.class_names:
        problems.append(f"its classes are {description['class_names']}, the dataset's are {data.class_names}")
    if description.get("dataset_fingerprint") != data.fingerprint:
        problems.append("it was trained on other training photos (the dataset fingerprints differ)")
    split = TrainConfig.stored_split(description.get("config", {}))
    if split != (config.effective_split_seed, config.val_fraction):
        problems.append(
            f"its validation split (split seed {split[0]}, fraction {split[1]}) differs from this run's "
            f"(split seed {config.effective_split_seed}, fraction {config.val_fraction}), so validation "
            f"would score photos it trained on; set split_seed to {split[0]} and val_fraction to {split[1]}"
        )
    if problems:
        raise ConfigError(
            f"{role} {path} does not match this run: {'; '.join(problems)}. "
            f"Use a model trained with the same settings, or train without {role}."
        )
    origin = {
        "path": str(path),
        "model_version": description.get("model_version"),
        "weights_sha256": description.get("weights_sha256"),
    }
    logger.info("%s: %s (%s)", role, path, origin["model_version"])
    return model, origin


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL divergence of the student's softened distribution from the teacher's, times temperature squared.

    The factor keeps the gradient's scale independent of the temperature
    (Hinton, Vinyals and Dean, "Distilling the knowledge in a neural network", 2015).
    """
    student = torch.log_softmax(student_logits.float() / temperature, dim=1)
    teacher = torch.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = nn.functional.kl_div(student, teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def _never_stop() -> bool:
    return False


def _ignore_progress(event: dict) -> None:
    pass


def _build_networks(config: TrainConfig, data: PreparedData, mean, std, device: torch.device):
    """Build the network to train and the optional teacher, each with its origin (None when absent)."""
    if config.init_from is not None:
        model, starting_point = load_related_model(config.init_from, "init_from", config, data, mean, std)
    else:
        model, starting_point = create_model(config.backbone, len(data.class_names), config.weights_file), None
    if config.mode == "linear-probe":
        freeze_backbone(model)
    model = model.to(device).to(memory_format=torch.channels_last)

    teacher, teacher_origin = None, None
    if config.teacher is not None:
        # Building the teacher draws random initial weights. fork_rng keeps those draws out of training's.
        with torch.random.fork_rng(devices=[]):
            teacher, teacher_origin = load_related_model(config.teacher, "teacher", config, data, mean, std)
        teacher = teacher.to(device).to(memory_format=torch.channels_last).eval()
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
    return model, starting_point, teacher, teacher_origin


def _training_loader(dataset, config: TrainConfig, device: torch.device) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(dataset) > config.batch_size,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
        persistent_workers=config.num_workers > 0,
        worker_init_fn=_seed_worker,
        pin_memory=device.type == "cuda",
    )


def _base_description(config: TrainConfig, model: nn.Module, data: PreparedData, mean, std) -> dict:
    """Return the model.json fields that stay the same for every saved epoch."""
    return {
        "backbone": config.backbone,
        "architecture": type(model).__name__,
        "class_names": data.class_names,
        "image_size": config.image_size,
        "source_size": config.source_size,
        "mean": mean,
        "std": std,
        "tta": config.tta,
        "config": config.to_dict(),
        "dataset_fingerprint": data.fingerprint,
        "dataset_stats": data.stats,
    }


def _score_related_models(related, data: PreparedData, device, config: TrainConfig) -> None:
    """Log each starting model's or teacher's own validation score and store it in its origin.

    `related` contains (role, origin, network) triples; an origin of None is skipped.
    """
    for role, origin, network in related:
        if origin is None:
            continue
        # The teacher's pass leaves the random state as a plain run has it. The starting
        # model's pass does not, so that runs from earlier versions of this code repeat.
        with torch.random.fork_rng(devices=[], enabled=role == "teacher"):
            scores = validate(network, data.val, device, config, data.class_names)
        origin.update(val_accuracy=scores["accuracy"], val_macro_f1=scores["macro_f1"])
        logger.info("%s: val_acc %.4f val_macro_f1 %.4f", role, scores["accuracy"], scores["macro_f1"])


def _validate_epoch(model, average, data: PreparedData, device, config: TrainConfig) -> tuple[dict, dict | None]:
    """Score the weights that get saved, and with a moving average also the training weights."""
    if average is None:
        return validate(model, data.val, device, config, data.class_names), None

    val = validate(average.model, data.val, device, config, data.class_names)
    # Scoring the training weights shows what the average adds (the best epoch ignores it).
    # fork_rng keeps this extra pass from changing the random draws of later epochs.
    with torch.random.fork_rng(devices=[]):
        training_weights = validate(model, data.val, device, config, data.class_names)
    return val, training_weights


def _epoch_metrics(
    epoch: int, config: TrainConfig, trained: dict, val: dict, training_weights, lr: float, seconds: float
):
    """Build the epoch's history entry and log it as one line."""
    metrics = {
        "epoch": epoch,
        "train_loss": trained["train_loss"],
        "val_accuracy": val["accuracy"],
        "val_macro_f1": val["macro_f1"],
        "lr": lr,
        "seconds": seconds,
    }
    raw_note = ""
    if training_weights is not None:
        metrics["raw_val_accuracy"] = training_weights["accuracy"]
        metrics["raw_val_macro_f1"] = training_weights["macro_f1"]
        raw_note = f" (without averaging: val_macro_f1 {training_weights['macro_f1']:.4f})"
    logger.info(
        "epoch %d/%d train_loss %.4f val_acc %.4f val_macro_f1 %.4f lr %.2e %.0f s%s",
        epoch, config.epochs, metrics["train_loss"], metrics["val_accuracy"],
        metrics["val_macro_f1"], metrics["lr"], metrics["seconds"], raw_note,
    )  # fmt: skip
    return metrics


def fit(
    config: TrainConfig,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> FitResult:
    """Train a classifier as `config` sets out and save the best epoch to config.out_dir.

    `on_progress` receives a dict after every batch ("phase": "train") and
    after every epoch ("phase": "epoch_end" with "metrics"). `should_stop`
    is polled between batches; when it returns True, training ends and the
    best checkpoint so far is kept.
    """
    config.validate()
    on_progress = on_progress or _ignore_progress
    should_stop = should_stop or _never_stop
    started = time.perf_counter()
    device = resolve_device(config.device)
    threads = configure_threads(config.num_workers if device.type == "cpu" else 0)
    seed_everything(config.seed)
    logger.info("training on %s with %d threads: %s", device, threads, config)

    probe = create_model(config.backbone, 2, config.weights_file, pretrained=False)
    mean, std = model_normalization(probe)
    data = prepare_data(config, mean, std)
    model, starting_point, teacher, teacher_origin = _build_networks(config, data, mean, std, device)
    loader = _training_loader(data.train, config, device)
    optimizer, scheduler = build_optimizer(model, config, len(loader))
    # With ema_decay, the moving average is what gets validated and saved.
    average = WeightAverage(model, config.ema_decay) if config.ema_decay is not None else None
    scored_model = average.model if average is not None else model
    cutmix = CutMix(config.cutmix_prob, config.cutmix_alpha, config.seed) if config.cutmix_prob > 0 else None
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    base_description = _base_description(config, model, data, mean, std)
    # A starting model's or teacher's own score on this split is the figure to beat.
    _score_related_models(
        [("init_from", starting_point, model), ("teacher", teacher_origin, teacher)], data, device, config
    )
    for role, origin in (("init_from", starting_point), ("teacher", teacher_origin)):
        if origin is not None:
            base_description[role] = origin

    result = FitResult(model_dir=None)
    best_score, epochs_without_gain = -1.0, 0
    try:
        for epoch in range(1, config.epochs + 1):
            epoch_started = time.perf_counter()
            trained = train_one_epoch(
                model, loader, optimizer, scheduler, loss_fn, device, config, epoch, on_progress, should_stop,
                average=average, teacher=teacher, cutmix=cutmix,
            )  # fmt: skip
            val, training_weights = _validate_epoch(model, average, data, device, config)
            lr, seconds = optimizer.param_groups[0]["lr"], time.perf_counter() - epoch_started
            metrics = _epoch_metrics(epoch, config, trained, val, training_weights, lr, seconds)
            result.history.append(metrics)

            # Ties go to the later epoch: the learning rate is lower there.
            if val["macro_f1"] >= best_score:
                best_score, epochs_without_gain = val["macro_f1"], 0
                result.best_epoch, result.val_metrics = epoch, val
                description = {**base_description, "best_epoch": epoch, "history": result.history}
                description["metrics"] = {"val": _summary(val)}
                result.model_dir = save_checkpoint(scored_model, description, config.out_dir)
            else:
                epochs_without_gain += 1
            on_progress({"phase": "epoch_end", "epoch": epoch, "epochs": config.epochs, "metrics": metrics})

            if config.patience is not None and epochs_without_gain >= config.patience:
                logger.info("stopping early: no better val macro-F1 for %d epochs", epochs_without_gain)
                result.stopped_early = True
                break
    except Cancelled:
        logger.info("training cancelled in epoch %d; best epoch kept: %s", epoch, result.best_epoch)
        result.cancelled = True

    # A cancelled run skips this extra validation pass: its owner asked it to stop.
    if result.model_dir is not None and not result.cancelled:
        result.calibration = _calibrate_saved(result.model_dir, data, device, config)
    result.seconds = time.perf_counter() - started
    return result


def _calibrate_saved(model_dir: Path, data: PreparedData, device: torch.device, config: TrainConfig) -> dict:
    """Fit the saved model's temperature on the validation photos and store it in its model.json."""
    saved, _ = load_checkpoint(model_dir, device)
    report = calibrate_network(saved, data.val, device, config.tta, batch_size=config.batch_size * 2)
    store_calibration(model_dir, report, config.effective_split_seed)
    return report


def _summary(report: dict) -> dict:
    return {key: report[key] for key in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "n")}


def _seed_worker(worker_id: int) -> None:
    import random

    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
