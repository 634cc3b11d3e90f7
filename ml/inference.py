"""Classify images with a saved model, loaded once and reused."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

import ml
from ml.checkpoints import load_checkpoint
from ml.evaluation import apply_temperature
from ml.images import open_image
from ml.runtime import resolve_device
from ml.transforms import EvalTransform

logger = logging.getLogger(__name__)


class Predictor:
    """A loaded model that turns images into class probabilities.

    Preprocessing comes from the model's own description: crop the central
    square, reduce it to `source_size` (the resolution the model was
    validated on), then scale it to the network input. This gives the same
    input for a 64-pixel thumbnail and a 24-megapixel photo of one scene.
    """

    def __init__(self, model_dir: str | Path | None = None, device: str = "auto", batch_size: int = 32):
        self.model_dir = Path(model_dir) if model_dir else ml.DEFAULT_MODEL_DIR
        self.device = str(resolve_device(device))
        self.model, self.description = load_checkpoint(self.model_dir, self.device)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.class_names: list[str] = list(self.description["class_names"])
        self.version: str = self.description.get("model_version", self.model_dir.name)
        self.tta: bool = bool(self.description.get("tta", False))
        # Fitted on validation photos by ml.calibration; 1 leaves the network's own probabilities.
        self.temperature: float = float(self.description.get("temperature", 1.0))
        self.batch_size = batch_size
        self.transform = EvalTransform.from_description(self.description)
        logger.info("loaded model %s from %s on %s", self.version, self.model_dir, self.device)

    @property
    def draft_size(self) -> int:
        """The short side a JPEG may be decoded at without losing input detail."""
        return self.description.get("source_size") or self.description["image_size"]

    def predict(self, images: Sequence[Image.Image | bytes]) -> list[dict[str, float]]:
        """Return class probabilities for each image, in the model's class order.

        Raises ImageDecodeError when an item is bytes that do not decode.
        """
        tensors = [self.transform(open_image(item, draft_size=self.draft_size)) for item in images]
        results = []
        for start in range(0, len(tensors), self.batch_size):
            batch = torch.stack(tensors[start : start + self.batch_size])
            for row in self._probabilities(batch).tolist():
                results.append(dict(zip(self.class_names, row)))
        return results

    @torch.inference_mode()
    def _probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        probabilities = self.model(batch).float().softmax(dim=1)
        if self.tta:
            flipped = self.model(torch.flip(batch, dims=[3])).float().softmax(dim=1)
            probabilities = (probabilities + flipped) / 2
        probabilities = apply_temperature(probabilities, self.temperature)
        return probabilities.cpu()
