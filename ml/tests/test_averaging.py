import pytest
import torch
from PIL import Image
from torch import nn

from ml.averaging import average_states, check_compatible, compare_on_validation, recalibrate_batch_norm
from ml.checkpoints import load_checkpoint, read_description, save_checkpoint, write_description
from ml.errors import CheckpointError
from ml.evaluation import evaluate
from ml.inference import Predictor
from ml.models import Ensemble, create_model, model_normalization
from ml.testing import tiny_train_config
from ml.training import fit, prepare_data


def test_average_states_floats_and_counters():
    first = {"weight": torch.tensor([1.0, 2.0]), "count": torch.tensor(7)}
    second = {"weight": torch.tensor([3.0, 6.0]), "count": torch.tensor(9)}

    averaged = average_states([first, second])

    assert torch.equal(averaged["weight"], torch.tensor([2.0, 4.0]))
    assert averaged["count"].item() == 7


def test_recalibration_measures_data_statistics():
    norm = nn.BatchNorm2d(3)
    model = nn.Sequential(norm)
    # Channel c has values around c, with variance 4.
    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.arange(3.0).view(1, 3, 1, 1) + 2 * torch.randn(16, 3, 8, 8, generator=generator), None)
        for _ in range(20)
    ]

    seen = recalibrate_batch_norm(model, batches, torch.device("cpu"))

    assert seen == 320
    assert norm.running_mean.tolist() == pytest.approx([0.0, 1.0, 2.0], abs=0.05)
    assert norm.running_var.tolist() == pytest.approx([4.0, 4.0, 4.0], rel=0.05)
    assert norm.momentum == 0.1
    assert not model.training


def _description(version, seed, split_seed=None, **changes):
    description = {
        "model_version": version,
        "backbone": "efficientnet_lite0",
        "class_names": ["a", "b"],
        "image_size": 32,
        "source_size": 32,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "dataset_fingerprint": "f00d",
        "config": tiny_train_config("data", "out", seed=seed, split_seed=split_seed).to_dict(),
    }
    description.update(changes)
    return description


def test_members_must_share_the_validation_split():
    check_compatible([_description("a", seed=0), _description("b", seed=1, split_seed=0)])

    with pytest.raises(CheckpointError, match="split seed 1 against 0"):
        check_compatible([_description("a", seed=0), _description("b", seed=1)])


def test_members_must_share_classes_and_data():
    with pytest.raises(CheckpointError, match="class_names"):
        check_compatible([_description("a", 0), _description("b", 1, 0, class_names=["a", "c"])])
    with pytest.raises(CheckpointError, match="dataset_fingerprint"):
        check_compatible([_description("a", 0), _description("b", 1, 0, dataset_fingerprint="beef")])
    with pytest.raises(CheckpointError, match="at least two"):
        check_compatible([_description("a", 0)])
    with pytest.raises(CheckpointError, match="model b is already an ensemble"):
        check_compatible([_description("a", 0), _description("b", 1, 0, ensemble_size=2)])


def test_split_seed_fixes_validation_images(tiny_dataset, tmp_path):
    mean, std = model_normalization(create_model("efficientnet_lite0", 2, pretrained=False))

    def val_pixels(**seeds):
        data = prepare_data(tiny_train_config(tiny_dataset, tmp_path, **seeds), mean, std)
        return sorted(image.tobytes() for image in data.val.images)

    assert val_pixels(seed=5, split_seed=0) == val_pixels(seed=0)
    assert val_pixels(seed=5) != val_pixels(seed=0)


def test_val_only_data_skips_train_photos(tiny_dataset, tmp_path):
    mean, std = model_normalization(create_model("efficientnet_lite0", 2, pretrained=False))
    config = tiny_train_config(tiny_dataset, tmp_path, seed=0)

    full = prepare_data(config, mean, std)
    val_only = prepare_data(config, mean, std, load_train=False)

    assert val_only.train is None
    assert full.train is not None
    assert val_only.val.labels == full.val.labels
    assert [image.tobytes() for image in val_only.val.images] == [image.tobytes() for image in full.val.images]
    assert val_only.fingerprint == full.fingerprint
    assert val_only.stats == full.stats


def test_compare_on_validation_saves_both(tiny_dataset, tmp_path):
    members = [
        fit(tiny_train_config(tiny_dataset, tmp_path / f"seed{seed}", epochs=1, seed=seed, split_seed=0)).model_dir
        for seed in (0, 1)
    ]

    result = compare_on_validation(members, out_dir=tmp_path / "average", recalibrate=True, device="cpu")

    names = [row["name"] for row in result["rows"]]
    assert len(names) == 5
    assert names[2].startswith("ensemble of 2")
    assert names[4] == "weight average, batch norm re-estimated"
    assert all(0 <= row["macro_f1"] <= 1 for row in result["rows"])
    averaged, description = load_checkpoint(result["out_dir"])
    assert [member["seed"] for member in description["combined_from"]] == [0, 1]
    assert description["batch_norm_recalibration_images"] > 0
    first, second = (load_checkpoint(path)[0] for path in members)
    key = "conv_stem.weight"
    expected = (first.state_dict()[key] + second.state_dict()[key]) / 2
    assert torch.allclose(averaged.state_dict()[key], expected)

    ensemble = compare_on_validation(members, out_dir=tmp_path / "ensemble", keep="ensemble", device="cpu")

    description = read_description(ensemble["out_dir"])
    assert description["ensemble_size"] == 2
    assert description["metrics"]["val"]["macro_f1"] == ensemble["rows"][2]["macro_f1"]
    assert evaluate(ensemble["out_dir"], tiny_dataset, device="cpu")["n"] == 60


def _tiny_ensemble(size=2):
    torch.manual_seed(0)
    return Ensemble([create_model("efficientnet_lite0", 10, pretrained=False).eval() for _ in range(size)])


def test_ensemble_output_mean_probability():
    model = _tiny_ensemble().eval()
    images = torch.randn(3, 3, 32, 32)

    with torch.no_grad():
        expected = torch.stack([member(images).softmax(dim=1) for member in model.members]).mean(dim=0)
        assert torch.allclose(model(images).softmax(dim=1), expected, atol=1e-6)


def test_ensemble_checkpoint_round_trip(tmp_path):
    model = _tiny_ensemble()
    mean, std = model_normalization(model.members[0])
    description = {
        "backbone": "efficientnet_lite0",
        "class_names": [f"c{i}" for i in range(10)],
        "image_size": 32,
        "source_size": None,
        "mean": mean,
        "std": std,
        "tta": True,
        "ensemble_size": 2,
    }
    folder = save_checkpoint(model, description, tmp_path / "ensemble")

    predictor = Predictor(folder, device="cpu")
    probabilities = predictor.predict([Image.new("RGB", (40, 30), (200, 10, 10))])[0]
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    loaded, _ = load_checkpoint(folder)
    assert isinstance(loaded, Ensemble)

    write_description(folder, {**read_description(folder), "ensemble_size": 3})
    with pytest.raises(CheckpointError, match="do not fit 3 x backbone"):
        load_checkpoint(folder)
