"""Exceptions whose messages are meant for the person running the command."""


class MLError(Exception):
    """Base class for expected failures with a message a user can act on."""


class ConfigError(MLError, ValueError):
    """A training or evaluation setting is invalid."""


class DatasetError(MLError):
    """The dataset folder is missing, malformed or has too many bad files."""


class ModelLoadError(MLError):
    """Pretrained weights are missing or do not fit the architecture."""


class TrainingError(MLError):
    """A failure that stops training, such as a loss that is no longer a finite number."""


class CheckpointError(MLError):
    """A saved model does not match its description or cannot be read."""


class ImageDecodeError(MLError, ValueError):
    """An input is not a readable image."""
