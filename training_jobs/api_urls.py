"""Training endpoints, mounted under /api/v1/ by the project URLs."""

from django.urls import path

from training_jobs import api

urlpatterns = [
    path("datasets/", api.DatasetListApi.as_view(), name="dataset-list"),
    path("training-jobs/", api.TrainingJobListCreateApi.as_view(), name="training-job-list"),
    path("training-jobs/compare/", api.TrainingJobCompareApi.as_view(), name="training-job-compare"),
    path("training-jobs/<int:job_id>/", api.TrainingJobDetailApi.as_view(), name="training-job-detail"),
    path("training-jobs/<int:job_id>/cancel/", api.TrainingJobCancelApi.as_view(), name="training-job-cancel"),
    path("training-jobs/<int:job_id>/promote/", api.TrainingJobPromoteApi.as_view(), name="training-job-promote"),
]
