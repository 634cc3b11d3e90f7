import pytest

from ml.data import AHE_CLASSES
from ml.testing import make_image_folder, make_tiny_checkpoint


@pytest.fixture
def tiny_dataset(tmp_path):
    return make_image_folder(tmp_path / "data", per_class=6, size=32)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("model"), AHE_CLASSES, image_size=32)
