import json

import numpy as np
import pytest
import torch
from PIL import Image

from ml.calibration import calibrate, fit_temperature
from ml.errors import CheckpointError
from ml.evaluation import apply_temperature, probabilities_from_logits
from ml.inference import Predictor
from ml.metrics import expected_calibration_error, negative_log_likelihood
from ml.testing import make_tiny_checkpoint, tiny_train_config
from ml.training import fit


def test_fit_temperature_recovers_true_value():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 3, size=(1, 20000, 10)).astype(np.float32))
    true_probabilities = (logits[0] / 2.5).softmax(dim=1).numpy().astype(np.float64)
    labels = np.array([rng.choice(10, p=row / row.sum()) for row in true_probabilities])

    temperature = fit_temperature(logits, labels)

    assert temperature == pytest.approx(2.5, rel=0.05)
    fitted = probabilities_from_logits(logits, temperature)
    assert negative_log_likelihood(fitted, labels) < negative_log_likelihood(probabilities_from_logits(logits), labels)


@pytest.mark.parametrize("temperature", [0.3, 2.0, 7.0])
def test_temperature_keeps_top_class(temperature):
    logits = torch.randn(2, 500, 10, generator=torch.Generator().manual_seed(1)) * 4

    plain = probabilities_from_logits(logits)
    scaled = probabilities_from_logits(logits, temperature)

    assert np.array_equal(plain.argmax(axis=1), scaled.argmax(axis=1))
    assert np.allclose(scaled.sum(axis=1), 1.0, atol=1e-5)
    assert (scaled.max(axis=1) > plain.max(axis=1)).all() == (temperature < 1)


def test_temperature_one_changes_nothing():
    probabilities = torch.tensor([[0.7, 0.2, 0.1]])

    assert apply_temperature(probabilities, 1.0) is probabilities


def test_calibration_error_hand_made_cases():
    probabilities = np.array([[0.9, 0.1]] * 10)
    nine_right = np.array([0] * 9 + [1])
    all_right = np.zeros(10, dtype=int)

    assert expected_calibration_error(probabilities, nine_right) == pytest.approx(0.0)
    assert expected_calibration_error(probabilities, all_right) == pytest.approx(0.1)


def test_fit_stores_temperature_for_predictor(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr("ml.calibration.MIN_CALIBRATION_IMAGES", 10)
    result = fit(tiny_train_config(tiny_dataset, tmp_path / "run", epochs=2))

    description = json.loads((result.model_dir / "model.json").read_text())
    stored = description["calibration"]
    assert description["temperature"] == stored["temperature"] == result.calibration["temperature"]
    assert stored["images"] == 20
    assert stored["split"] == "val"
    assert stored["nll_after"] <= stored["nll_before"]
    assert calibrate(result.model_dir, device="cpu")["temperature"] == description["temperature"]

    image = Image.open(next((tiny_dataset / "test" / "altar").iterdir()))
    calibrated = Predictor(result.model_dir, device="cpu")
    plain = Predictor(result.model_dir, device="cpu")
    plain.temperature = 1.0
    [scaled_row], [plain_row] = calibrated.predict([image]), plain.predict([image])
    expected = apply_temperature(torch.tensor([list(plain_row.values())]), description["temperature"])[0]
    assert list(scaled_row.values()) == pytest.approx(expected.tolist(), abs=1e-5)


def test_calibrate_skips_small_validation_split(tiny_dataset, tmp_path):
    result = fit(tiny_train_config(tiny_dataset, tmp_path / "run", epochs=1))

    description = json.loads((result.model_dir / "model.json").read_text())
    assert description["temperature"] == 1.0
    assert description["calibration"]["skipped"].startswith(
        "only 20 validation images; a temperature is fitted from 100"
    )


def test_calibrate_rejects_other_photos(tiny_dataset, tmp_path):
    model_dir = make_tiny_checkpoint(tmp_path / "model", image_size=32)

    with pytest.raises(CheckpointError, match="training config"):
        calibrate(model_dir, tiny_dataset, device="cpu")
