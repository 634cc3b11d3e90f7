import logging

import pytest
from PIL import Image

from ml.data import (
    AHE_CLASSES,
    content_fingerprint,
    deduplicate,
    list_split,
    load_images,
    scan_dataset,
    stratified_split,
)
from ml.errors import DatasetError
from ml.testing import make_image_folder


def _write(path, color=(10, 20, 30), size=16):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path, "JPEG")


def test_list_split_keeps_folder_spelling_and_order(tiny_dataset):
    split = list_split(tiny_dataset, "train")

    assert split.class_names == AHE_CLASSES
    assert len(split.samples) == 6 * len(AHE_CLASSES)
    assert split.samples[0].label == 0


def test_list_split_reads_odd_file_names(tmp_path):
    odd_names = ["San Cebri┬án (1).jpg", "88px-SF_-_α╕òbside.JPG", "no extension", "semi;colon's.jpeg"]
    for name in odd_names:
        _write(tmp_path / "train" / "dome(inner)" / name)
    _write(tmp_path / "train" / ".hidden.jpg")

    split = list_split(tmp_path, "train")

    assert split.class_names == ["dome(inner)"]
    assert sorted(sample.path.name for sample in split.samples) == sorted(odd_names)


def test_content_fingerprint_follows_photos_and_labels_not_names(tmp_path):
    def fingerprint_of(root):
        split = list_split(root, "test")
        return content_fingerprint(split.samples, split.class_names)

    _write(tmp_path / "a" / "test" / "apse" / "one.jpg", (10, 20, 30))
    _write(tmp_path / "a" / "test" / "vault" / "two.jpg", (200, 20, 30))
    _write(tmp_path / "renamed" / "test" / "apse" / "photo 1.jpg", (10, 20, 30))
    _write(tmp_path / "renamed" / "test" / "vault" / "photo 2.jpg", (200, 20, 30))
    _write(tmp_path / "relabelled" / "test" / "vault" / "one.jpg", (10, 20, 30))
    _write(tmp_path / "relabelled" / "test" / "apse" / "two.jpg", (200, 20, 30))
    _write(tmp_path / "other" / "test" / "apse" / "one.jpg", (90, 160, 30))
    _write(tmp_path / "other" / "test" / "vault" / "two.jpg", (200, 20, 30))

    reference = fingerprint_of(tmp_path / "a")

    assert fingerprint_of(tmp_path / "renamed") == reference
    assert fingerprint_of(tmp_path / "relabelled") != reference
    assert fingerprint_of(tmp_path / "other") != reference


def test_ahe_test_fingerprint_matches_the_dataset():
    from pathlib import Path

    from ml.reference import AHE_TEST_FINGERPRINT, is_ahe_test_split

    root = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "ahe"
    if not (root / "test").is_dir():
        pytest.skip(f"the AHE dataset is not at {root}")
    split = list_split(root, "test", AHE_CLASSES)

    assert len(split.samples) == 1404
    assert content_fingerprint(split.samples, split.class_names) == AHE_TEST_FINGERPRINT
    assert is_ahe_test_split(AHE_TEST_FINGERPRINT)
    assert not is_ahe_test_split(content_fingerprint(split.samples[1:], split.class_names))


def test_list_split_rejects_missing_split(tmp_path):
    with pytest.raises(DatasetError, match="train"):
        list_split(tmp_path, "train")


def test_list_split_rejects_unknown_class(tiny_dataset):
    with pytest.raises(DatasetError, match="altar"):
        list_split(tiny_dataset, "test", class_names=["apse", "vault"])


def test_load_images_skips_corrupt_file_with_warning(tmp_path, caplog):
    _write(tmp_path / "train" / "apse" / "good.jpg")
    (tmp_path / "train" / "apse" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    split = list_split(tmp_path, "train")

    with caplog.at_level(logging.WARNING):
        images, _labels, bad = load_images(split.samples, max_bad=5)

    assert len(images) == 1
    assert [path.name for path in bad] == ["broken.jpg"]
    assert "broken.jpg" in caplog.text


def test_load_images_stops_after_too_many_bad_files(tmp_path):
    for number in range(3):
        (tmp_path / "train" / "apse" / f"bad{number}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "train" / "apse" / f"bad{number}.jpg").write_text("text, not an image")
    split = list_split(tmp_path, "train")

    with pytest.raises(DatasetError, match="more than 2 unreadable images"):
        load_images(split.samples, max_bad=2)


def test_fit_rejects_empty_class(tmp_path):
    from ml.config import TrainConfig
    from ml.training import fit

    make_image_folder(tmp_path, classes=["apse", "vault"], per_class=4, size=16)
    for path in (tmp_path / "train" / "vault").iterdir():
        path.unlink()

    config = TrainConfig(
        data_dir=str(tmp_path),
        out_dir=str(tmp_path / "out"),
        backbone="efficientnet_lite0",
        epochs=1,
        image_size=32,
        num_workers=0,
    )
    with pytest.raises(DatasetError, match="class with no images in train/: vault"):
        fit(config)


def test_deduplicate_counts_copies_once_and_drops_conflicts(tmp_path):
    _write(tmp_path / "train" / "apse" / "a.jpg", (1, 2, 3))
    _write(tmp_path / "train" / "apse" / "a (1).jpg", (1, 2, 3))
    _write(tmp_path / "train" / "apse" / "shared.jpg", (200, 100, 0))
    _write(tmp_path / "train" / "vault" / "shared.jpg", (200, 100, 0))
    _write(tmp_path / "train" / "vault" / "v.jpg", (0, 0, 250))

    unique = deduplicate(list_split(tmp_path, "train"))

    assert sorted(sample.path.name for sample in unique.samples) == ["a (1).jpg", "v.jpg"]
    assert unique.duplicates_removed == 1
    assert unique.conflicting_removed == 2


def test_stratified_split_is_seeded_and_per_class(tiny_dataset):
    samples = list_split(tiny_dataset, "train").samples

    train_a, val_a = stratified_split(samples, 0.34, seed=3)
    train_b, val_b = stratified_split(samples, 0.34, seed=3)
    _, val_c = stratified_split(samples, 0.34, seed=4)

    assert val_a == val_b
    assert train_a == train_b
    assert val_a != val_c
    assert {sample.label for sample in val_a} == set(range(len(AHE_CLASSES)))
    assert len(val_a) == 2 * len(AHE_CLASSES)
    assert not set(val_a) & set(train_a)


def test_scan_dataset_reports_counts_bad_files_and_gaps(tmp_path):
    make_image_folder(tmp_path, classes=["apse", "vault"], per_class=2, size=16)
    _write(tmp_path / "train" / "altar" / "only_in_train.jpg")
    (tmp_path / "test" / "vault" / "broken.jpg").write_bytes(b"GIF89a truncated")

    summary = scan_dataset(tmp_path)

    assert summary["classes"] == ["altar", "apse", "vault"]
    assert summary["counts"]["train"] == {"altar": 1, "apse": 2, "vault": 2}
    assert summary["counts"]["test"] == {"altar": 0, "apse": 2, "vault": 2}
    assert summary["unreadable"] == ["test/vault/broken.jpg"]
    assert summary["missing"] == {"train": [], "test": ["altar"]}


def test_scan_marks_broken_only_class_missing(tmp_path):
    make_image_folder(tmp_path, classes=["apse", "vault"], per_class=2, size=16)
    for old in (tmp_path / "test" / "apse").iterdir():
        old.unlink()
    (tmp_path / "test" / "apse" / "a.jpg").write_text("not an image")

    summary = scan_dataset(tmp_path)

    assert summary["counts"]["test"] == {"apse": 0, "vault": 2}
    assert summary["unreadable"] == ["test/apse/a.jpg"]
    assert summary["missing"] == {"train": [], "test": ["apse"]}
