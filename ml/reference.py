"""Published per-class test F1 on the AHE dataset, in dataset folder order.

Free of torch, so the web process can show these rows without loading a model.
"""

from ml.data import AHE_CLASSES

# The fully trained ResNet of Llamas et al., "Classification of Architectural
# Heritage Images Using Deep Learning Techniques", Applied Sciences
# 7(10):992, 2017.
PAPER_F1 = dict(zip(AHE_CLASSES, (0.906, 0.874, 0.903, 0.953, 0.967, 0.937, 0.805, 0.923, 0.990, 0.925)))

# The best public fine-tune found on the same test set: ImageNet HRNet-W64.
HRNET_W64_F1 = dict(zip(AHE_CLASSES, (0.937, 0.909, 0.944, 0.946, 0.949, 0.936, 0.940, 0.979, 0.966, 0.936)))

# Images per class in AHE's official test split (1,404 in all), which both
# rows above were scored on.
AHE_TEST_COUNTS = dict(zip(AHE_CLASSES, (140, 50, 170, 210, 69, 142, 70, 240, 150, 163)))

# `ml.data.content_fingerprint` of that split: every photo's MD5 with its
# class name, so renamed files still match and any other photo does not.
AHE_TEST_FINGERPRINT = "34080689f90002b9"


def is_ahe_test_split(fingerprint: str) -> bool:
    """Return whether a split's content fingerprint is that of AHE's official test split.

    Only scores on that split can be set beside the published ones.
    """
    return fingerprint == AHE_TEST_FINGERPRINT


def is_ahe_test_set(counts: dict[str, int]) -> bool:
    """Return whether per-class test image counts are those of AHE's official test split.

    For scores stored before evaluations recorded a fingerprint. The counts
    identify the split among real datasets, though a copy with other photos
    and the same counts would pass.
    """
    return dict(counts) == AHE_TEST_COUNTS
