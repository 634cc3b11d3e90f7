"""Evaluation summaries as data, terminal tables and Markdown."""

from __future__ import annotations

import logging

from ml.checkpoints import read_description
from ml.evaluation import evaluate, read_near_duplicates
from ml.metrics import CALIBRATION_BINS, bootstrap_intervals, classification_report
from ml.reference import HRNET_W64_F1, PAPER_F1, is_ahe_test_split

logger = logging.getLogger(__name__)


def evaluation_summary(model_dir, data_dir, split="test", tta=True, device="auto") -> dict:
    """Evaluate a model and add the published per-class F1 beside its own.

    When the dataset ships near_duplicates_train_test.tsv, the summary also
    contains the scores without those test images, which a model may have seen
    in another size during training.
    """
    description = read_description(model_dir)
    report = evaluate(model_dir, data_dir, split=split, tta=tta, device=device)
    class_names = report["class_names"]
    index = {name: i for i, name in enumerate(class_names)}

    near_duplicates = read_near_duplicates(data_dir) if split == "test" else set()
    without = None
    if near_duplicates:
        kept = [sample for sample in report["samples"] if sample["path"] not in near_duplicates]
        subset = classification_report([index[s["true"]] for s in kept], [index[s["pred"]] for s in kept], class_names)
        without = {
            "excluded": len(report["samples"]) - len(kept),
            "n": subset["n"],
            "accuracy": subset["accuracy"],
            "macro_f1": subset["macro_f1"],
        }

    logger.info("computing 95%% bootstrap intervals over %d images", len(report["samples"]))
    intervals = bootstrap_intervals(
        [index[s["true"]] for s in report["samples"]], [index[s["pred"]] for s in report["samples"]], class_names
    )

    # The published F1 were measured on AHE's official test split. Other
    # photos get the columns for reference, but no verdict.
    comparable = split == "test" and is_ahe_test_split(report["split_fingerprint"])
    comparison = []
    for name in class_names:
        ours = report["per_class"][name]["f1"]
        paper, hrnet = PAPER_F1.get(name), HRNET_W64_F1.get(name)
        comparison.append(
            {
                "class": name,
                "f1": ours,
                "paper_f1": paper,
                "hrnet_w64_f1": hrnet,
                "f1_interval": intervals["per_class_f1"][name],
                "beats_paper": None if paper is None or not comparable else ours > paper,
            }
        )
    return {
        "model": str(model_dir),
        "model_version": description.get("model_version"),
        "backbone": description.get("backbone"),
        "data": str(data_dir),
        **report,
        "without_near_duplicates": without,
        "comparable_with_published": comparable,
        "intervals": intervals,
        "comparison": comparison,
    }


_NOT_COMPARABLE = (
    "These photos are not AHE's official test split, so the published F1 are shown for reference only, "
    "without a verdict."
)


def _f(value) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def _range(bounds) -> str:
    return "-" if not bounds else f"{bounds[0]:.3f}-{bounds[1]:.3f}"


def _calibration_line(summary: dict) -> str:
    temperature = summary.get("temperature", 1.0)
    scaled = "no temperature scaling" if temperature == 1.0 else f"probabilities scaled by temperature {temperature:g}"
    return (
        f"calibration error {summary['calibration_error']:.4f} "
        f"(mean gap between confidence and accuracy, {CALIBRATION_BINS} bins; {scaled})"
    )


def format_evaluation(summary: dict) -> str:
    """Render the summary as plain-text tables for a terminal."""
    names = summary["class_names"]
    lines = [
        (
            f"model {summary['model_version']} ({summary['backbone']}) on {summary['split']}/ "
            f"of {summary['data']}: {summary['n']} images, TTA {'on' if summary['tta'] else 'off'}"
        ),
        f"accuracy {summary['accuracy']:.4f}   macro-F1 {summary['macro_f1']:.4f}",
    ]
    intervals = summary.get("intervals")
    if intervals:
        lines.append(
            f"{intervals['level']:.0%} bootstrap intervals ({intervals['resamples']} resamples of the images): "
            f"accuracy {_range(intervals['accuracy'])}   macro-F1 {_range(intervals['macro_f1'])}"
        )
    without = summary.get("without_near_duplicates")
    if without:
        lines.append(
            f"without {without['excluded']} near-duplicates of train images: "
            f"accuracy {without['accuracy']:.4f}   macro-F1 {without['macro_f1']:.4f} ({without['n']} images)"
        )
    if "calibration_error" in summary:
        lines.append(_calibration_line(summary))
    if summary.get("skipped_unreadable"):
        lines.append(f"skipped unreadable: {', '.join(summary['skipped_unreadable'])}")

    if not summary.get("comparable_with_published", True):
        lines.append(_NOT_COMPARABLE)

    width = max(len(name) for name in names)
    lines += ["", f"{'class':<{width}}  precision  recall     F1  F1 interval  support   paper  HRNet-W64  beats paper"]
    for row in summary["comparison"]:
        metrics = summary["per_class"][row["class"]]
        verdict = {True: "yes", False: "NO", None: "-"}[row["beats_paper"]]
        lines.append(
            f"{row['class']:<{width}}  {metrics['precision']:9.3f}  {metrics['recall']:6.3f}  "
            f"{metrics['f1']:5.3f}  {_range(row.get('f1_interval')):>11}  {metrics['support']:7d}   "
            f"{_f(row['paper_f1'])}      {_f(row['hrnet_w64_f1'])}  {verdict}"
        )

    lines += ["", "confusion matrix (rows: true class, columns: predicted, in the order above)"]
    for name, row in zip(names, summary["confusion_matrix"]):
        lines.append(f"{name:<{width}}  " + " ".join(f"{count:4d}" for count in row))
    return "\n".join(lines)


def markdown_evaluation(summary: dict) -> str:
    """Render the summary as Markdown, for the results page."""
    lines = [
        (
            f"Model `{summary['model_version']}` ({summary['backbone']}), "
            f"`{summary['split']}/` split, {summary['n']} images, mirror TTA {'on' if summary['tta'] else 'off'}."
        ),
        "",
        f"- Accuracy: **{summary['accuracy']:.4f}**",
        f"- Macro-F1: **{summary['macro_f1']:.4f}**",
    ]
    intervals = summary.get("intervals")
    if intervals:
        lines.append(
            f"- {intervals['level']:.0%} bootstrap intervals ({intervals['resamples']} resamples of the test images): "
            f"accuracy {_range(intervals['accuracy'])}, macro-F1 {_range(intervals['macro_f1'])}"
        )
    without = summary.get("without_near_duplicates")
    if without:
        lines.append(
            f"- Without the {without['excluded']} test images that have a near-duplicate in train "
            f"({without['n']} images): accuracy {without['accuracy']:.4f}, macro-F1 {without['macro_f1']:.4f}"
        )
    if "calibration_error" in summary:
        lines.append(f"- {_calibration_line(summary).capitalize()}")
    if summary.get("comparable_with_published", True):
        wins = sum(1 for row in summary["comparison"] if row["beats_paper"])
        lines.append(f"- Classes above the paper's F1: {wins} of {len(summary['comparison'])}")
    else:
        lines.append(f"- {_NOT_COMPARABLE}")
    lines += [
        "",
        "| class | precision | recall | F1 | F1 interval | support | paper (ResNet) | HRNet-W64 | above paper |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for row in summary["comparison"]:
        metrics = summary["per_class"][row["class"]]
        verdict = {True: "yes", False: "**no**", None: "-"}[row["beats_paper"]]
        lines.append(
            f"| {row['class']} | {metrics['precision']:.3f} | {metrics['recall']:.3f} | "
            f"**{metrics['f1']:.3f}** | {_range(row.get('f1_interval'))} | {metrics['support']} | {_f(row['paper_f1'])} | "
            f"{_f(row['hrnet_w64_f1'])} | {verdict} |"
        )
    names = summary["class_names"]
    lines += ["", "Confusion matrix (rows: true class, columns: predicted):", ""]
    lines.append("| true \\ predicted | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for name, row in zip(names, summary["confusion_matrix"]):
        lines.append(f"| {name} | " + " | ".join(str(count) for count in row) + " |")
    return "\n".join(lines) + "\n"
