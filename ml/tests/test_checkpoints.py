import json

import pytest
import torch

from ml.checkpoints import load_checkpoint, read_description, save_checkpoint
from ml.errors import CheckpointError
from ml.export import export_model
from ml.models import create_model
from ml.testing import make_tiny_checkpoint

CLASSES = ["altar", "apse", "vault"]


def _logits(model):
    torch.manual_seed(1)
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, 32, 32))


def _description(backbone="efficientnet_lite0", classes=CLASSES):
    return {"backbone": backbone, "class_names": classes, "image_size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}


def test_round_trip_keeps_logits_and_description(tmp_path):
    model = create_model("efficientnet_lite0", len(CLASSES), pretrained=False)

    save_checkpoint(model, {**_description(), "metrics": {"val": {"macro_f1": 0.5}}}, tmp_path)
    loaded, description = load_checkpoint(tmp_path)

    assert torch.allclose(_logits(model), _logits(loaded))
    assert description["class_names"] == CLASSES
    assert description["metrics"]["val"]["macro_f1"] == 0.5
    assert description["package_version"]
    assert description["model_version"].startswith("efficientnet_lite0-")
    assert not list(tmp_path.glob("*.tmp"))


def test_saved_files_readable_by_others(tmp_path):
    make_tiny_checkpoint(tmp_path, CLASSES)

    for name in ("model.safetensors", "model.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_load_rejects_wrong_class_count(tmp_path):
    make_tiny_checkpoint(tmp_path, CLASSES)
    description = read_description(tmp_path)
    description["class_names"] = [*CLASSES, "gargoyle"]
    (tmp_path / "model.json").write_text(json.dumps(description))

    with pytest.raises(
        CheckpointError, match=r"class count mismatch: model\.json lists 4 classes but model\.safetensors has 3 outputs"
    ):
        load_checkpoint(tmp_path)


def test_load_rejects_wrong_backbone(tmp_path):
    make_tiny_checkpoint(tmp_path, CLASSES)
    description = read_description(tmp_path)
    description["backbone"] = "efficientnet_lite2"
    (tmp_path / "model.json").write_text(json.dumps(description))

    with pytest.raises(CheckpointError, match="do not fit backbone 'efficientnet_lite2'"):
        load_checkpoint(tmp_path)


def test_load_rejects_truncated_weights(tmp_path):
    make_tiny_checkpoint(tmp_path, CLASSES)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    with pytest.raises(CheckpointError, match="truncated, corrupt or from another model"):
        load_checkpoint(tmp_path)


def test_load_rejects_missing_weights(tmp_path):
    make_tiny_checkpoint(tmp_path, CLASSES)
    (tmp_path / "model.safetensors").unlink()

    with pytest.raises(CheckpointError, match="weights file not found"):
        load_checkpoint(tmp_path)


def test_load_rejects_description_without_fields(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"backbone": "efficientnet_lite0"}))

    with pytest.raises(CheckpointError, match="lacks fields: class_names"):
        load_checkpoint(tmp_path)


def test_load_rejects_invalid_json(tmp_path):
    (tmp_path / "model.json").write_text("{not json")

    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("dtype", ["int8", "float16"])
def test_export_is_smaller_and_close(tmp_path, dtype):
    original_dir = make_tiny_checkpoint(tmp_path / "full", CLASSES)
    original, _ = load_checkpoint(original_dir)

    report = export_model(original_dir, tmp_path / dtype, dtype)
    exported, description = load_checkpoint(tmp_path / dtype)

    assert report["size_ratio"] < (0.3 if dtype == "int8" else 0.55)
    assert description["weights_dtype"] == dtype
    original_probabilities = _logits(original).softmax(dim=1)
    exported_probabilities = _logits(exported).softmax(dim=1)
    assert torch.allclose(original_probabilities, exported_probabilities, atol=0.05)
    assert (tmp_path / dtype / "model.safetensors").stat().st_mode & 0o777 == 0o644
