"""Export a smaller copy of a model for inference and compare it with the original.

int8 stores every convolution and linear weight as 8-bit integers with one
float scale per output channel (symmetric, weight-only). Activations stay
float32, so the model runs with the same code after dequantisation at load
time. float16 halves every float tensor. Both load with `load_checkpoint`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ml.checkpoints import (
    DESCRIPTION_NAME,
    QUANT_SCALE_SUFFIX,
    WEIGHTS_NAME,
    read_description,
    sha256_of,
    write_description,
)
from ml.errors import ConfigError

logger = logging.getLogger(__name__)


def quantize_int8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Quantise weights with two or more dimensions per output channel to int8."""
    quantized = {}
    for key, tensor in state.items():
        if tensor.is_floating_point() and tensor.dim() >= 2 and key.endswith("weight"):
            flat = tensor.reshape(tensor.shape[0], -1)
            scale = flat.abs().amax(dim=1).clamp(min=1e-12) / 127.0
            values = torch.round(flat / scale[:, None]).clamp(-127, 127).to(torch.int8)
            quantized[key] = values.reshape(tensor.shape).contiguous()
            quantized[key + QUANT_SCALE_SUFFIX] = scale.to(torch.float32)
        else:
            quantized[key] = tensor
    return quantized


def to_float16(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.half() if value.is_floating_point() else value for key, value in state.items()}


def export_model(model_dir: str | Path, out_dir: str | Path, dtype: str, data_dir: str | None = None) -> dict:
    """Write a smaller copy of `model_dir` to `out_dir`; return sizes and, with data, test macro-F1."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if model_dir.resolve() == out_dir.resolve():
        raise ConfigError("the export folder must differ from the model folder")
    description = read_description(model_dir)
    state = load_file(str(model_dir / WEIGHTS_NAME))
    converters = {"int8": quantize_int8, "float16": to_float16}
    if dtype not in converters:
        raise ConfigError(f"dtype must be int8 or float16, got {dtype!r}")

    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / WEIGHTS_NAME
    temporary = out_dir / f".{WEIGHTS_NAME}.tmp"
    save_file(converters[dtype](state), str(temporary), metadata={"backbone": description["backbone"]})
    # save_file leaves the file readable by its owner only; workers may run as other users.
    temporary.chmod(0o644)
    temporary.replace(weights_path)
    digest = sha256_of(weights_path)
    exported = {
        **description,
        "weights_sha256": digest,
        "weights_dtype": dtype,
        "model_version": f"{description.get('model_version', 'model')}-{dtype}",
        "exported_from": description.get("model_version"),
    }
    write_description(out_dir, exported)

    report = {
        "original": {"path": str(model_dir), "bytes": (model_dir / WEIGHTS_NAME).stat().st_size},
        "exported": {"path": str(out_dir), "bytes": weights_path.stat().st_size, "dtype": dtype},
    }
    report["size_ratio"] = report["exported"]["bytes"] / report["original"]["bytes"]
    if data_dir:
        from ml.evaluation import evaluate

        for name, folder in (("original", model_dir), ("exported", out_dir)):
            metrics = evaluate(folder, data_dir, split="test", tta=bool(description.get("tta", True)))
            report[name]["test_accuracy"] = metrics["accuracy"]
            report[name]["test_macro_f1"] = metrics["macro_f1"]
    logger.info("exported %s as %s to %s (%s)", model_dir, dtype, out_dir, DESCRIPTION_NAME)
    return report
