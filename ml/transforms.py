"""Preprocessing shared by training, evaluation and inference.

Training and inference build their pipelines from the same description
fields (image_size, source_size, mean, std), so the two cannot drift.
"""

from __future__ import annotations

import io
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


def jpeg_round_trip(image: Image.Image, quality: int) -> Image.Image:
    """Encode and decode `image` as JPEG, adding the block artifacts of that quality."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


# Filters a photo site or camera may have used to make a thumbnail.
DOWNSCALE_FILTERS = (
    Image.Resampling.BICUBIC,
    Image.Resampling.BILINEAR,
    Image.Resampling.LANCZOS,
    Image.Resampling.BOX,
    Image.Resampling.HAMMING,
)


class RandomLowResolution:
    """With probability `p`, turn an image into an upscaled JPEG thumbnail.

    AHE's 64 px test photos are JPEG files saved at that size, so their 8x8
    compression blocks cover a large part of the picture. Reducing alone does
    not reproduce that: a model trained on clean reductions scored 0.966
    accuracy on clean 64 px validation images but 0.946 once those were saved
    as JPEG (quality 90), and mistook many test photos for apses.
    """

    def __init__(
        self, p: float, size_range: tuple[int, int], out_side: int, jpeg_prob: float, jpeg_quality: tuple[int, int]
    ):
        self.p = p
        self.size_range = size_range
        self.out_side = out_side
        self.jpeg_prob = jpeg_prob
        self.jpeg_quality = jpeg_quality

    def __call__(self, image: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return image

        low_side = random.randint(*self.size_range)
        small = image.resize((low_side, low_side), random.choice(DOWNSCALE_FILTERS))
        if random.random() < self.jpeg_prob:
            small = jpeg_round_trip(small, random.randint(*self.jpeg_quality))
        return small.resize((self.out_side, self.out_side), RESAMPLE)


def train_transform(config, mean, std) -> v2.Compose:
    return v2.Compose(
        [
            v2.RandomResizedCrop(config.image_size, scale=config.crop_scale, antialias=True),
            RandomLowResolution(
                config.low_res_prob,
                config.low_res_range,
                config.image_size,
                config.jpeg_prob,
                config.jpeg_quality_range,
            ),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


class EvalTransform:
    """Crop the central square, reduce it to `source_size`, scale to `image_size`.

    With `jpeg_quality`, the reduced image is also saved as JPEG of that
    quality, which makes 128 px validation photos look like the 64 px test
    photos. Evaluation and inference of real files leave it None.
    """

    def __init__(self, image_size: int, source_size: int | None, mean, std, jpeg_quality: int | None = None):
        self.image_size = image_size
        self.source_size = source_size
        self.jpeg_quality = jpeg_quality
        self.to_tensor = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = center_square(image)
        low_side = self.source_size or self.image_size
        if self.jpeg_quality is None or image.width <= low_side:
            return self.to_tensor(degrade(image, low_side, self.image_size))

        small = image.resize((low_side, low_side), RESAMPLE, reducing_gap=3.0)
        small = jpeg_round_trip(small, self.jpeg_quality)
        return self.to_tensor(small.resize((self.image_size, self.image_size), RESAMPLE))

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
