from django.apps import AppConfig


class TrainingJobsConfig(AppConfig):
    name = "training_jobs"
    verbose_name = "Training jobs"
    default_auto_field = "django.db.models.BigAutoField"
