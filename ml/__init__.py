"""Train, evaluate, store and run the heritage element classifier.

Pure PyTorch and timm: nothing in this package imports Django, so the web
platform's workers, the command line and the tests all share one code path.
"""

import os
from pathlib import Path

# Nothing here may reach a model hub: weights come from installed packages or
# local files. Set before timm or huggingface_hub is imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

__version__ = "0.1.0"

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
