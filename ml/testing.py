"""Small generated datasets and models for tests; nothing here touches real data."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw
from torch import nn

from ml.data import AHE_CLASSES


def make_image_folder(
    root: str | Path,
    classes: list[str] = AHE_CLASSES,
    per_class: int = 4,
    size: int = 32,
    splits: tuple[str, ...] = ("train", "test"),
    seed: int = 0,
) -> Path:
    """Write a tiny dataset whose classes differ by colour and shape, and return its root.

    Each class gets its own hue and stripe count so that a small model can
    learn it within an epoch or two.
    """
    root = Path(root)
    rng = random.Random(seed)
    for split in splits:
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for number in range(per_class):
                _class_image(index, len(classes), size, rng).save(folder / f"{name}_{number}.jpg", quality=92)
    return root


def _class_image(index: int, count: int, size: int, rng: random.Random) -> Image.Image:
    hue = int(255 * index / max(1, count))
    base = (hue, 255 - hue, (hue * 7) % 256)
    image = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(image)
    stripes = index + 1
    for stripe in range(stripes):
        x = int((stripe + 0.5) * size / stripes)
        draw.line((x, 0, x, size), fill=(255 - base[0], 255 - base[1], 255 - base[2]), width=max(1, size // 16))
    # A little noise so that no two images are byte-identical (de-duplication).
    for _ in range(8):
        draw.point((rng.randrange(size), rng.randrange(size)), fill=(rng.randrange(256),) * 3)
    return image


def make_tiny_checkpoint(
    out_dir: str | Path,
    class_names: list[str] = AHE_CLASSES,
    image_size: int = 32,
    backbone: str = "efficientnet_lite0",
    seed: int = 0,
    ensemble_size: int = 1,
) -> Path:
    """Save a randomly initialised model that loads and predicts in well under a second.

    With `ensemble_size` above 1 it is an ensemble of that many networks.
    """
    import torch

    from ml.checkpoints import save_checkpoint
    from ml.models import Ensemble, create_model, model_normalization

    torch.manual_seed(seed)
    networks = [create_model(backbone, len(class_names), pretrained=False) for _ in range(ensemble_size)]
    model: nn.Module = networks[0] if ensemble_size == 1 else Ensemble(networks)
    mean, std = model_normalization(networks[0])
    description = {
        "backbone": backbone,
        "class_names": list(class_names),
        "image_size": image_size,
        "source_size": None,
        "mean": mean,
        "std": std,
        "tta": False,
        "config": {"note": "random weights for tests"},
        "dataset_fingerprint": None,
        "metrics": {},
    }
    if ensemble_size > 1:
        description["ensemble_size"] = ensemble_size
    return save_checkpoint(model, description, out_dir)


def tiny_train_config(data_dir: str | Path, out_dir: str | Path, **overrides):
    """Return a TrainConfig for a run of a few seconds on a `make_image_folder` dataset, with `overrides` applied."""
    from ml.config import TrainConfig

    values = {
        "data_dir": str(data_dir),
        "out_dir": str(out_dir),
        "backbone": "efficientnet_lite0",
        "epochs": 3,
        "batch_size": 12,
        "learning_rate": 3e-3,
        "image_size": 32,
        "source_size": 32,
        "low_res_range": (16, 32),
        "val_fraction": 0.34,
        "num_workers": 0,
        "patience": None,
        "device": "cpu",
    }
    values.update(overrides)
    return TrainConfig(**values)
