"""Preprocessing shared by training, evaluation and inference.

Training and inference build their pipelines from the same description
fields (image_size, source_size, mean, std), so the two cannot drift.
"""

from __future__ import annotations

import random

import torch
from PIL import Image
from torchvision.transforms import v2

RESAMPLE = Image.Resampling.BICUBIC


def center_square(image: Image.Image) -> Image.Image:
    """Crop the central square, as the dataset's photos were cropped."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def degrade(image: Image.Image, low_side: int, out_side: int) -> Image.Image:
    """Reduce a square image to `low_side` pixels, then scale it to `out_side`."""
    if image.width > low_side:
        # reducing_gap makes a 24-megapixel photo cheap: Pillow first shrinks
        # by an integer factor with box filtering, then resamples.
        image = image.resize((low_side, low_side), RESAMPLE, reducing_gap=3.0)
    return image.resize((out_side, out_side), RESAMPLE)


class RandomLowResolution:
    """With probability `p`, blur an image by a round trip through a small size."""

    def __init__(self, p: float, size_range: tuple[int, int], out_side: int):
        self.p = p
        self.size_range = size_range
        self.out_side = out_side

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image
        return degrade(image, random.randint(*self.size_range), self.out_side)


def train_transform(config, mean, std) -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomResizedCrop(config.image_size, scale=config.crop_scale, antialias=True),
            RandomLowResolution(config.low_res_prob, config.low_res_range, config.image_size),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


class EvalTransform:
    """Crop the central square, reduce it to `source_size`, scale to `image_size`."""

    def __init__(self, image_size: int, source_size: int | None, mean, std):
        self.image_size = image_size
        self.source_size = source_size
        self.to_tensor = v2.Compose(
            [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = center_square(image)
        low_side = self.source_size or self.image_size
        return self.to_tensor(degrade(image, low_side, self.image_size))

    @classmethod
    def from_description(cls, description: dict) -> EvalTransform:
        return cls(
            description["image_size"],
            description.get("source_size"),
            description["mean"],
            description["std"],
        )


class ImageListDataset(torch.utils.data.Dataset):
    def __init__(self, images: list[Image.Image], labels: list[int], transform):
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index]), self.labels[index]
