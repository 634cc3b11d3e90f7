"""Save and load models as safetensors weights plus a JSON description.

The description names the backbone, class names in order, preprocessing,
training config, dataset fingerprint, metrics and package version, and the
SHA-256 of the weights file, so a truncated or swapped file is detected.
Loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import ml
from ml.errors import CheckpointError, ModelLoadError
from ml.models import create_ensemble, create_model

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
DESCRIPTION_NAME = "model.json"
REQUIRED_FIELDS = ("backbone", "class_names", "image_size", "mean", "std", "weights_sha256")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp creates the file readable by its owner only. A model folder is
    # read by other users too, such as a web server or a worker container.
    os.chmod(temporary, 0o644)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def save_checkpoint(model: nn.Module, description: dict, out_dir: str | Path) -> Path:
    """Write the weights and their description atomically; return the directory."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}

    weights_path = out_dir / WEIGHTS_NAME
    handle, temporary = tempfile.mkstemp(dir=out_dir, prefix=f".{WEIGHTS_NAME}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(state, temporary, metadata={"backbone": description["backbone"]})
        # save_file replaces the file with one only its owner can read, so the
        # mode is set after it. Workers and the web process may run as other users.
        os.chmod(temporary, 0o644)
        digest = sha256_of(Path(temporary))
        os.replace(temporary, weights_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

    full_description = {
        **description,
        "weights_file": WEIGHTS_NAME,
        "weights_sha256": digest,
        "model_version": description.get("model_version") or f"{description['backbone']}-{digest[:10]}",
        "package_version": ml.__version__,
        "created_at": description.get("created_at") or datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_description(out_dir, full_description)
    return out_dir


def write_description(model_dir: Path, description: dict) -> None:
    text = json.dumps(description, indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(Path(model_dir) / DESCRIPTION_NAME, text.encode())


def record_split_metrics(model_dir: str | Path, split: str, report: dict) -> None:
    """Store a split's headline scores under ``metrics[split]`` in model.json; the weights are untouched.

    `report` is `ml.evaluation.evaluate`'s result. The scores, per-class
    figures and confusion matrix are kept, not the per-image samples, with
    the split's fingerprint so that a reader can tell which photos they were
    measured on.
    """
    description = read_description(model_dir)
    description.setdefault("metrics", {})[split] = {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "per_class": report["per_class"],
        "confusion_matrix": report["confusion_matrix"],
        "class_names": report["class_names"],
        "n": report["n"],
        "tta": report["tta"],
        "split_fingerprint": report["split_fingerprint"],
    }
    write_description(Path(model_dir), description)


def read_description(model_dir: str | Path) -> dict:
    """Read and check model.json; raise CheckpointError naming what is wrong."""
    path = Path(model_dir) / DESCRIPTION_NAME
    if not path.is_file():
        raise CheckpointError(f"model description not found: {path}")
    try:
        description = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"model description {path} is not valid JSON: {error}") from error
    if not isinstance(description, dict):
        raise CheckpointError(f"model description {path} must be a JSON object")
    missing = [name for name in REQUIRED_FIELDS if name not in description]
    if missing:
        raise CheckpointError(f"model description {path} lacks fields: {', '.join(missing)}")
    return description


def load_checkpoint(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model described by model.json and load its weights strictly."""
    model_dir = Path(model_dir)
    description = read_description(model_dir)
    weights_path = model_dir / description.get("weights_file", WEIGHTS_NAME)
    if not weights_path.is_file():
        raise CheckpointError(f"weights file not found: {weights_path}")

    digest = sha256_of(weights_path)
    if digest != description["weights_sha256"]:
        raise CheckpointError(
            f"weights file {weights_path} does not match its description: SHA-256 is "
            f"{digest[:12]}…, model.json expects {description['weights_sha256'][:12]}… "
            "(the file is truncated, corrupt or from another model)"
        )
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"weights file {weights_path} is unreadable: {error}") from error

    state = dequantize_state(state)
    model = _build_matching_model(description, state, weights_path)
    model.to(device).eval()
    return model, description


def _build_matching_model(description: dict, state: dict, weights_path: Path) -> nn.Module:
    class_names = description["class_names"]
    # An ensemble keeps its networks' tensors under members.<i>. in one file.
    ensemble_size = description.get("ensemble_size", 1)
    if not isinstance(ensemble_size, int) or ensemble_size < 1:
        raise CheckpointError(f"ensemble_size must be a positive whole number, got {ensemble_size!r}")
    try:
        if ensemble_size == 1:
            model = create_model(description["backbone"], len(class_names), pretrained=False)
        else:
            model = create_ensemble(description["backbone"], len(class_names), ensemble_size)
    except ModelLoadError as error:
        raise CheckpointError(f"cannot build backbone {description['backbone']!r}: {error}") from error

    expected = model.state_dict()
    prefix = "members.0." if ensemble_size > 1 else ""
    classifier_key = prefix + model.default_cfg.get("classifier", "classifier") + ".weight"
    if classifier_key in state and state[classifier_key].shape[0] != len(class_names):
        raise CheckpointError(
            f"class count mismatch: model.json lists {len(class_names)} classes but "
            f"{weights_path.name} has {state[classifier_key].shape[0]} outputs"
        )
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [key for key in set(expected) & set(state) if expected[key].shape != state[key].shape]
    if missing or unexpected or wrong_shape:
        networks = f"{ensemble_size} x " if ensemble_size > 1 else ""
        raise CheckpointError(
            f"weights in {weights_path.name} do not fit {networks}backbone {description['backbone']!r}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected and {len(wrong_shape)} "
            f"wrongly shaped tensors (first missing: {missing[:2]}, first unexpected: {unexpected[:2]})"
        )
    model.load_state_dict(state, strict=True)
    return model


QUANT_SCALE_SUFFIX = ".__int8_scale"


def dequantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turn int8 weight-only or float16 tensors back into float32."""
    restored = {}
    for key, tensor in state.items():
        if key.endswith(QUANT_SCALE_SUFFIX):
            continue
        scale = state.get(key + QUANT_SCALE_SUFFIX)
        if scale is not None:
            shape = (-1,) + (1,) * (tensor.dim() - 1)
            restored[key] = tensor.to(torch.float32) * scale.view(shape)
        elif tensor.dtype in (torch.float16, torch.bfloat16):
            restored[key] = tensor.to(torch.float32)
        else:
            restored[key] = tensor
    return restored
