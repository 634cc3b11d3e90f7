"""Rewrite the metrics of model versions promoted from a job in model.json's shape.

Promotion used to store ``{"accuracy", "macro_f1", "training_job"}`` (test
scores only), while the committed model stores ``{"val": ..., "test": ...}``.
"""

from django.db import migrations


def nest_promoted_metrics(apps, schema_editor):
    ModelVersion = apps.get_model("classifier", "ModelVersion")
    TrainingJob = apps.get_model("training_jobs", "TrainingJob")
    for version in ModelVersion.objects.all():
        metrics = version.metrics or {}
        if "macro_f1" not in metrics or "test" in metrics:
            continue
        job = TrainingJob.objects.filter(pk=metrics.get("training_job")).first()
        version.metrics = {
            "val": {
                "accuracy": job.val_accuracy if job else None,
                "macro_f1": job.val_macro_f1 if job else None,
            },
            "test": {
                "accuracy": metrics.get("accuracy"),
                "macro_f1": metrics["macro_f1"],
                "split_fingerprint": job.test_split_fingerprint if job else "",
            },
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
