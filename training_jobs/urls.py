from django.urls import path

from training_jobs import views

app_name = "training_jobs"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("compare/", views.compare, name="compare"),
    path("compare.json", views.compare_json, name="compare-json"),
    path("jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<int:job_id>/progress.json", views.job_progress_json, name="job-progress"),
    path("jobs/<int:job_id>/metrics.json", views.job_metrics_json, name="job-metrics-json"),
    path("jobs/<int:job_id>/metrics.csv", views.job_metrics_csv, name="job-metrics-csv"),
    path("jobs/<int:job_id>/model/<str:filename>", views.job_model_file, name="job-model-file"),
    path("jobs/<int:job_id>/samples/", views.job_samples, name="job-samples"),
    path("jobs/<int:job_id>/samples/<int:sample_id>/image", views.sample_image, name="sample-image"),
    path("jobs/<int:job_id>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<int:job_id>/promote/", views.job_promote, name="job-promote"),
]
