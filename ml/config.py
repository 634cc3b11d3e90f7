"""The training configuration: one frozen dataclass is the contract.

The command line builds it from flags and the Celery training worker from a
job row. Defaults reproduce the committed default model.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from ml.errors import ConfigError

MODES = ("finetune", "linear-probe")
DISTILL_DEFAULTS = (0.5, 2.0)  # distill_weight and distill_temperature
# Above this the softened outputs are all but uniform, and far above it the
# temperature-squared factor overflows the loss.
MAX_DISTILL_TEMPERATURE = 100.0
CUTMIX_DEFAULT_ALPHA = 1.0


@dataclass(frozen=True)
class TrainConfig:
    data_dir: str  # dataset root holding train/<class>/ and test/<class>/
    out_dir: str  # where model.safetensors and model.json are written
    backbone: str = "efficientnet_lite2"  # a Lite name, or any timm name with weights_file
    weights_file: str | None = None  # local ImageNet weights for a timm architecture
    mode: str = "finetune"  # "finetune" trains all layers, "linear-probe" only the head
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 1e-3  # peak AdamW learning rate after warm-up
    weight_decay: float = 0.05  # not applied to biases and normalisation weights
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to zero
    label_smoothing: float = 0.1
    # Validate and save an exponential moving average of the weights, updated
    # after every batch with this decay; None trains and saves the raw weights.
    ema_decay: float | None = None
    image_size: int = 128  # network input side in pixels
    # Test photos are 64 px while train photos are 128 px. Training gets a
    # random share of images reduced to low_res_range and scaled back up, and
    # evaluation reduces every image to source_size first, so both sides meet
    # the same blur.
    low_res_prob: float = 0.85
    low_res_range: tuple[int, int] = (44, 88)
    jpeg_prob: float = 0.8  # share of reduced training images also saved as JPEG
    jpeg_quality_range: tuple[int, int] = (50, 95)
    source_size: int = 64  # evaluation and inference reduce inputs to this side first
    # Validation photos are reduced to source_size and saved as JPEG of this
    # quality, as AHE's test photos were (their quantisation tables match
    # quality 90), so the epoch is chosen on images that look like the test set.
    val_jpeg_quality: int | None = 90
    crop_scale: tuple[float, float] = (0.6, 1.0)  # random-resized-crop area range
    # CutMix (Yun et al., ICCV 2019): in this share of training batches, a
    # random box of each image is replaced by the same box of another image
    # of the batch, and the loss is shared between both labels by area.
    # 0 turns it off, and a run then draws no random numbers for it.
    cutmix_prob: float = 0.0
    # The box's share of the image is drawn from Beta(alpha, alpha); 1 is uniform.
    cutmix_alpha: float = CUTMIX_DEFAULT_ALPHA
    val_fraction: float = 0.1  # stratified share of train/ held out for model selection
    # Stop after this many epochs without a better val macro-F1. Off by
    # default: under a cosine schedule the validation score often dips while
    # the learning rate is high and peaks in the last epochs. The best epoch
    # on validation is kept either way.
    patience: int | None = None
    seed: int = 0
    # Seed of the validation split; None uses `seed`. Runs that differ only in
    # `seed` but share a split_seed are scored on the same held-out images, so
    # their validation figures, and averages or ensembles of them, compare.
    split_seed: int | None = None
    num_workers: int = 1  # data-loading processes; 0 loads in the training process
    device: str = "auto"  # "auto" takes CUDA when present, else the CPU
    max_bad_images: int = 20  # unreadable files tolerated before training stops
    tta: bool = True  # average predictions over the image and its mirror image
    # A model folder whose weights training starts from instead of ImageNet's,
    # to continue a run or to fine-tune after a linear probe. It must share the
    # backbone, classes, training photos and validation split, so that
    # validation never scores photos the starting model trained on.
    init_from: str | None = None
    # A model folder, or an ensemble saved by `ml average`, whose predictions
    # the network also learns from (knowledge distillation, Hinton et al.
    # 2015). The rules for init_from apply, but the backbone may differ.
    # Both networks take the same batch, so input size and normalisation must match.
    teacher: str | None = None
    # Share of the loss given to matching the teacher, 0 to 1.
    distill_weight: float = DISTILL_DEFAULTS[0]
    # Both networks' outputs are divided by this before they are compared.
    distill_temperature: float = DISTILL_DEFAULTS[1]

    def validate(self) -> None:
        """Raise ConfigError naming every invalid field, one "; "-separated message each."""
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            problems.append(f"batch_size must be at least 2, got {self.batch_size}")
        if not 0 < self.learning_rate < 1:
            problems.append(f"learning_rate must be between 0 and 1, got {self.learning_rate}")
        # EfficientNet's five stride-2 stages leave a 1x1 feature map below 32 px.
        if not 32 <= self.image_size <= 1024:
            problems.append(f"image_size must be between 32 and 1024 pixels, got {self.image_size}")
        if not 0 < self.val_fraction < 0.5:
            problems.append(f"val_fraction must be between 0 and 0.5, got {self.val_fraction}")
        if not 0 <= self.low_res_prob <= 1:
            problems.append(f"low_res_prob must be between 0 and 1, got {self.low_res_prob}")
        low, high = self.low_res_range
        if not 8 <= low <= high:
            problems.append(f"low_res_range must be two sizes with 8 <= low <= high, got {self.low_res_range}")
        if not 0 <= self.jpeg_prob <= 1:
            problems.append(f"jpeg_prob must be between 0 and 1, got {self.jpeg_prob}")
        low, high = self.jpeg_quality_range
        if not 1 <= low <= high <= 100:
            problems.append(
                f"jpeg_quality_range must be two qualities with 1 <= low <= high <= 100, got {self.jpeg_quality_range}"
            )
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            problems.append(f"ema_decay must be between 0 and 1 or None, got {self.ema_decay}")
        if self.patience is not None and self.patience < 1:
            problems.append(f"patience must be at least 1 or None, got {self.patience}")
        if self.num_workers < 0:
            problems.append(f"num_workers must be 0 or more, got {self.num_workers}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            problems.append(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.warmup_epochs < 0:
            problems.append(f"warmup_epochs must be 0 or more, got {self.warmup_epochs}")
        if self.init_from is not None and not (Path(self.init_from) / "model.json").is_file():
            problems.append(f"init_from must be a model folder with model.json, got {self.init_from}")
        if self.teacher is not None and not (Path(self.teacher) / "model.json").is_file():
            problems.append(f"teacher must be a model folder with model.json, got {self.teacher}")
        if not 0 <= self.distill_weight <= 1:
            problems.append(f"distill_weight must be between 0 and 1, got {self.distill_weight}")
        if not 0 < self.distill_temperature <= MAX_DISTILL_TEMPERATURE:
            problems.append(
                f"distill_temperature must be above 0 and at most {MAX_DISTILL_TEMPERATURE:g}, "
                f"got {self.distill_temperature}"
            )
        distill_settings = (self.distill_weight, self.distill_temperature)
        if self.teacher is None and distill_settings != DISTILL_DEFAULTS:
            problems.append(
                "distill_weight and distill_temperature apply only with a teacher: "
                "set teacher, or leave them at their defaults"
            )
        if not 0 <= self.cutmix_prob <= 1:
            problems.append(f"cutmix_prob must be between 0 and 1, got {self.cutmix_prob}")
        if not 0 < self.cutmix_alpha <= 100:
            problems.append(f"cutmix_alpha must be above 0 and at most 100, got {self.cutmix_alpha}")
        elif self.cutmix_prob == 0 and self.cutmix_alpha != CUTMIX_DEFAULT_ALPHA:
            problems.append(
                "cutmix_alpha applies only with CutMix on: set cutmix_prob above 0, or leave cutmix_alpha at 1"
            )
        if self.weights_file is not None and not Path(self.weights_file).is_file():
            problems.append(f"weights_file not found: {self.weights_file}")
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def effective_split_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed

    @staticmethod
    def stored_split(values: dict) -> tuple[int | None, float | None]:
        """(split seed, validation fraction) of a config stored as a dict, such as model.json's."""
        split_seed = values.get("split_seed")
        return (values.get("seed") if split_seed is None else split_seed), values.get("val_fraction")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build a config from a dict, such as a JSON config file, rejecting unknown keys."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        values = dict(values)
        for name in ("low_res_range", "crop_scale", "jpeg_quality_range"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: str | Path, **overrides) -> TrainConfig:
        try:
            values = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read config file {path}: {error}") from error
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls.from_dict(values)
