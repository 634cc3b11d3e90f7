import pytest

from ml.metrics import bootstrap_intervals, classification_report


def test_report_on_hand_made_labels():
    # true:      a a a b b c
    # predicted: a a b b c c
    report = classification_report([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])

    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert report["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert report["per_class"]["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_report_handles_class_never_predicted_or_absent():
    report = classification_report([0, 0], [0, 0], ["a", "b"])

    assert report["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["per_class"]["a"]["f1"] == 1.0
    # b occurs neither as a true nor as a predicted label, so it is not averaged.
    assert report["macro_f1"] == 1.0


def test_macro_f1_counts_absent_class_that_is_predicted():
    # c has no true images but is predicted once: a false positive that counts.
    report = classification_report([0, 0, 1, 1], [0, 2, 1, 1], ["a", "b", "c", "d"])

    assert report["per_class"]["c"]["f1"] == 0.0
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def test_bootstrap_skips_classes_absent_from_a_draw():
    # Class b has one image, so many draws leave it out. A perfect model
    # must still score 1.0 in every draw.
    labels = [0] * 30 + [1]

    intervals = bootstrap_intervals(labels, labels, ["a", "b", "c"], resamples=200)

    assert intervals["macro_f1"] == [1.0, 1.0]
    assert intervals["per_class_f1"]["b"] == [1.0, 1.0]
    assert intervals["per_class_f1"]["c"] is None


def test_bootstrap_intervals_perfect_model():
    labels = [0, 1, 2] * 20

    intervals = bootstrap_intervals(labels, labels, ["a", "b", "c"], resamples=200)

    assert intervals["accuracy"] == [1.0, 1.0]
    assert intervals["per_class_f1"] == {"a": [1.0, 1.0], "b": [1.0, 1.0], "c": [1.0, 1.0]}


def test_bootstrap_intervals_bracket_score():
    # 100 images of class a and 100 of b; 10 of each class are mistaken for the other.
    true = [0] * 100 + [1] * 100
    predicted = [0] * 90 + [1] * 10 + [1] * 90 + [0] * 10

    intervals = bootstrap_intervals(true, predicted, ["a", "b"], resamples=500)

    low, high = intervals["accuracy"]
    assert low < 0.9 < high
    assert low > 0.8
    assert high < 0.97  # about 0.9 +- 1.96 * sqrt(0.9 * 0.1 / 200) = 0.042
    assert intervals["macro_f1"][0] < 0.9 < intervals["macro_f1"][1]
    assert intervals == bootstrap_intervals(true, predicted, ["a", "b"], resamples=500)
    assert intervals != bootstrap_intervals(true, predicted, ["a", "b"], resamples=500, seed=1)
