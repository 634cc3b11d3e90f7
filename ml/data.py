"""Read an image-classification dataset laid out as <root>/<split>/<class>/<file>.

Class names are the folder names, exactly as spelled (AHE uses parentheses),
in sorted order. Train images are de-duplicated by content: a file that
appears several times counts once, and a file that appears under two
different classes is dropped, since its label is unknowable.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ml.errors import DatasetError, ImageDecodeError
from ml.images import open_image

logger = logging.getLogger(__name__)

AHE_CLASSES = [
    "altar",
    "apse",
    "bell_tower",
    "column",
    "dome(inner)",
    "dome(outer)",
    "flying_buttress",
    "gargoyle",
    "stained_glass",
    "vault",
]
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class SplitData:
    class_names: list[str]
    samples: list[Sample]
    duplicates_removed: int = 0
    conflicting_removed: int = 0
    digests: dict[Path, str] = field(default_factory=dict)


def class_folders(split_dir: Path) -> list[str]:
    """Return the class folder names of one split, sorted, hidden folders skipped."""
    return sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def list_split(data_dir: str | Path, split: str, class_names: list[str] | None = None) -> SplitData:
    """List the files of one split; `class_names` fixes the label order."""
    split_dir = Path(data_dir) / split
    if not split_dir.is_dir():
        raise DatasetError(f"dataset folder {split_dir} is missing: expected {split}/<class>/<image files>")

    found = class_folders(split_dir)
    if class_names is None:
        class_names = found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise DatasetError(f"{split_dir} has classes the model does not know: {', '.join(unknown)}")
    if not class_names:
        raise DatasetError(f"{split_dir} has no class folders")

    samples = []
    for label, name in enumerate(class_names):
        class_dir = split_dir / name
        files = sorted(_image_files(class_dir)) if class_dir.is_dir() else []
        samples.extend(Sample(path, label) for path in files)
    return SplitData(class_names=list(class_names), samples=samples)


def _image_files(class_dir: Path):
    for entry in class_dir.iterdir():
        if entry.is_file() and not entry.name.startswith("."):
            yield entry


def file_digest(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def deduplicate(split: SplitData) -> SplitData:
    """Keep one file per content hash; drop content that carries two labels."""
    by_digest: dict[str, list[Sample]] = defaultdict(list)
    digests = {}
    for sample in split.samples:
        digest = file_digest(sample.path)
        digests[sample.path] = digest
        by_digest[digest].append(sample)

    kept, duplicates, conflicting = [], 0, 0
    for group in by_digest.values():
        labels = {sample.label for sample in group}
        if len(labels) > 1:
            conflicting += len(group)
            logger.info(
                "dropping %d copies of %s: they carry labels %s",
                len(group),
                group[0].path.name,
                sorted(split.class_names[label] for label in labels),
            )
            continue
        kept.append(group[0])
        duplicates += len(group) - 1

    kept.sort(key=lambda sample: (sample.label, str(sample.path)))
    return SplitData(split.class_names, kept, duplicates, conflicting, digests)


def stratified_split(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out `val_fraction` of every class, chosen by a seeded shuffle."""
    by_label: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_label[sample.label].append(sample)

    rng = random.Random(seed)
    train, val = [], []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda sample: str(sample.path))
        rng.shuffle(group)
        count = max(1, round(len(group) * val_fraction)) if len(group) > 1 else 0
        val.extend(group[:count])
        train.extend(group[count:])
    return train, val


def fingerprint(digests: dict[Path, str], root: Path) -> str:
    """Return a short hash of every (relative path, content hash) pair."""
    hasher = hashlib.sha256()
    for path in sorted(digests, key=str):
        hasher.update(os.fsencode(path.relative_to(root)))
        hasher.update(digests[path].encode())
    return hasher.hexdigest()[:16]


def content_fingerprint(samples: list[Sample], class_names: list[str]) -> str:
    """Return a short hash of the photos and their labels, whatever the files are called.

    Two splits with the same photos under the same class names get the same
    value, so scores measured on them can be compared exactly.
    """
    entries = sorted(f"{class_names[sample.label]}\t{file_digest(sample.path)}" for sample in samples)
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


def load_images(
    samples: list[Sample], max_bad: int, max_side: int | None = None
) -> tuple[list[Image.Image], list[int], list[Path]]:
    """Decode every sample into memory, skipping unreadable files with a warning.

    Images larger than `max_side` on their short side are reduced, so a
    dataset of camera photos still fits in memory. Raises DatasetError once
    more than `max_bad` files fail.
    """
    images, labels, bad = [], [], []
    for sample in samples:
        try:
            image = open_image(sample.path, draft_size=max_side)
        except ImageDecodeError as error:
            bad.append(sample.path)
            logger.warning("skipping unreadable image %s: %s", sample.path, error)
            if len(bad) > max_bad:
                raise DatasetError(
                    f"more than {max_bad} unreadable images (latest: {sample.path}); "
                    "check the dataset or raise max_bad_images"
                ) from error
            continue
        if max_side and min(image.size) > max_side:
            scale = max_side / min(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        images.append(image)
        labels.append(sample.label)
    return images, labels, bad


def check_classes_have_images(class_names: list[str], labels: list[int], split_name: str) -> None:
    """Raise DatasetError naming every class without a single image in `labels`."""
    present = set(labels)
    empty = [name for label, name in enumerate(class_names) if label not in present]
    if empty:
        raise DatasetError(f"class with no images in {split_name}/: {', '.join(empty)}")


def scan_dataset(data_dir: str | Path) -> dict:
    """Summarise a dataset folder: readable images per split and class, unreadable files, gaps."""
    root = Path(data_dir)
    if root.is_file():
        raise DatasetError(f"{root} is a file, not a folder: give the folder that contains train/ and test/")
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    classes_by_split = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            raise DatasetError(f"dataset folder {split_dir} is missing: expected {split}/<class>/<image files>")
        classes_by_split[split] = class_folders(split_dir)

    classes = sorted(set().union(*classes_by_split.values()))
    counts, unreadable = {}, []
    for split in SPLITS:
        counts[split] = {}
        for name in classes:
            class_dir = root / split / name
            files = list(_image_files(class_dir)) if class_dir.is_dir() else []
            bad = [str(path.relative_to(root)) for path in files if not _is_readable(path)]
            # Only readable images count, so a class whose files are all broken is missing.
            counts[split][name] = len(files) - len(bad)
            unreadable.extend(bad)
    missing = {split: [name for name in classes if counts[split][name] == 0] for split in SPLITS}
    return {"classes": classes, "counts": counts, "unreadable": sorted(unreadable), "missing": missing}


def _is_readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception:  # noqa: BLE001 - Pillow raises many types for bad files
        return False
    return True
