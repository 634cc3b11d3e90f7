"""Score runs on their validation split at several evaluation input sizes.

Training crops 60-100% of each photo's area (RandomResizedCrop), so objects
look larger in training than in the whole central square that evaluation
shows. A larger input at evaluation, or a central zoom, can make up for this
(Touvron et al., "Fixing the train-test resolution discrepancy", NeurIPS
2019). This script measures it on the validation thumbnails (64 px, JPEG
quality 90, as `ml train` builds them), never on test/:

    .venv/bin/python scripts/eval_input_sizes.py ml/default_model \
        runs/lite2-seed2-split1 runs/lite2-seed3-split1 --data ../shared/datasets/ahe

Runs given together must share a validation split, as for `python -m ml average`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml.averaging import check_compatible, training_split
from ml.checkpoints import load_checkpoint
from ml.errors import CheckpointError
from ml.evaluation import predict_probabilities
from ml.metrics import classification_report
from ml.runtime import configure_threads
from ml.transforms import RESAMPLE, EvalTransform, ImageListDataset, center_square, jpeg_round_trip


class ZoomedEvalTransform(EvalTransform):
    """Validation thumbnail, then only its central `keep` pixels scaled to the input size."""

    def __init__(self, image_size: int, source_size: int, mean, std, jpeg_quality: int, keep: int):
        super().__init__(image_size, source_size, mean, std, jpeg_quality)
        self.keep = keep

    def __call__(self, image):
        small = center_square(image).resize((self.source_size, self.source_size), RESAMPLE, reducing_gap=3.0)
        small = jpeg_round_trip(small, self.jpeg_quality)
        offset = (self.source_size - self.keep) // 2
        small = small.crop((offset, offset, offset + self.keep, offset + self.keep))
        return self.to_tensor(small.resize((self.image_size, self.image_size), RESAMPLE))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="model folders that held out the same validation split")
    parser.add_argument("--data", help="dataset root; default: the path stored in the first run's config")
    parser.add_argument("--sizes", default="128,112,144,160", help="input sides in pixels, comma-separated")
    parser.add_argument(
        "--zoom-keep",
        type=int,
        default=56,
        help="central side in pixels of the 64 px thumbnail for the zoom; 0 skips it",
    )
    parser.add_argument("--json", dest="json_out", help="also write the scores to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    configure_threads()
    device = torch.device("cpu")
    loaded = [load_checkpoint(path, device) for path in args.runs]
    descriptions = [description for _, description in loaded]
    if len(loaded) > 1:
        check_compatible(descriptions)
    first = descriptions[0]
    try:
        config, data = training_split(first, args.data)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    labels = np.asarray(data.val.labels)
    mean, std, source = first["mean"], first["std"], first["source_size"]
    quality = config.val_jpeg_quality

    variants = {
        f"{size} px": EvalTransform(size, source, mean, std, quality) for size in map(int, args.sizes.split(","))
    }
    if args.zoom_keep:
        native = first["image_size"]
        variants[f"{native} px, central {args.zoom_keep}/{source}"] = ZoomedEvalTransform(
            native, source, mean, std, quality, args.zoom_keep
        )

    scores = {}
    print(f"validation split (seed {config.effective_split_seed}, {len(labels)} images), flip TTA on")
    for name, transform in variants.items():
        loader = torch.utils.data.DataLoader(
            ImageListDataset(data.val.images, data.val.labels, transform), batch_size=128
        )
        for (model, _), path in zip(loaded, args.runs):
            started = time.perf_counter()
            probabilities, _ = predict_probabilities(model, loader, device, tta=True)
            report = classification_report(labels.tolist(), probabilities.argmax(axis=1).tolist(), first["class_names"])
            scores.setdefault(name, {})[path] = {
                "accuracy": report["accuracy"],
                "macro_f1": report["macro_f1"],
                "per_class_f1": {label: values["f1"] for label, values in report["per_class"].items()},
            }
            print(
                f"{name:<24} {path:<32} accuracy {report['accuracy']:.4f} macro-F1 {report['macro_f1']:.4f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(scores, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
