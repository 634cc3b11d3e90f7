"""Rewrite the metrics of model versions promoted from a job in model.json's shape.

Promotion used to store ``{"accuracy", "macro_f1", "training_job"}`` (test
scores only), while the committed model stores ``{"val": ..., "test": ...}``.
"""

from django.db import migrations


def job_test_metrics(job, class_metrics):
    # A frozen copy of training_jobs.services.job_test_metrics, so that later
    # changes there do not change what this migration writes.
    rows = {row.class_name: row for row in class_metrics}
    per_class = {
        name: {"precision": row.precision, "recall": row.recall, "f1": row.f1, "support": row.support}
        for name in job.class_names or []
        if (row := rows.get(name)) is not None
    }
    return {
        "accuracy": job.test_accuracy,
        "macro_f1": job.test_macro_f1,
        "per_class": per_class,
        "confusion_matrix": job.test_confusion_matrix,
        "class_names": list(job.class_names or []),
        "n": sum(values["support"] for values in per_class.values()),
        "split_fingerprint": job.test_split_fingerprint,
    }


def nest_promoted_metrics(apps, schema_editor):
    ModelVersion = apps.get_model("classifier", "ModelVersion")
    TrainingJob = apps.get_model("training_jobs", "TrainingJob")
    ClassMetric = apps.get_model("training_jobs", "ClassMetric")
    for version in ModelVersion.objects.all():
        metrics = version.metrics or {}
        if "macro_f1" not in metrics or "test" in metrics:
            continue
        job = TrainingJob.objects.filter(pk=metrics.get("training_job")).first()
        if job is None:
            test = {"accuracy": metrics.get("accuracy"), "macro_f1": metrics["macro_f1"]}
        else:
            test = job_test_metrics(job, ClassMetric.objects.filter(job=job, split="test"))
        version.metrics = {
            "val": {
                "accuracy": job.val_accuracy if job else None,
                "macro_f1": job.val_macro_f1 if job else None,
            },
            "test": test,
            "training_job": metrics.get("training_job"),
        }
        version.save(update_fields=["metrics"])


def flatten_promoted_metrics(apps, schema_editor):
    ModelVersion = apps.get_model("classifier", "ModelVersion")
    for version in ModelVersion.objects.all():
        metrics = version.metrics or {}
        if metrics.get("training_job") is None or "test" not in metrics:
            continue
        version.metrics = {
            "accuracy": metrics["test"].get("accuracy"),
            "macro_f1": metrics["test"].get("macro_f1"),
            "training_job": metrics["training_job"],
        }
        version.save(update_fields=["metrics"])


class Migration(migrations.Migration):
    dependencies = [
        ("classifier", "0005_upload_hidden_name"),
        ("training_jobs", "0003_job_split_seed_ema_patience"),
    ]

    operations = [migrations.RunPython(nest_promoted_metrics, flatten_promoted_metrics)]
