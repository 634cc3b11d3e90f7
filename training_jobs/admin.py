"""Admin for datasets and training jobs. Every write goes through training_jobs.services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from heritage_site.admin_display import short_path_html
from training_jobs import services
from training_jobs.forms import DatasetRegisterForm, TrainingJobLaunchForm
from training_jobs.models import Dataset, TrainingJob


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "short_path",
        "train_images",
        "test_images",
        "unreadable_count",
        "missing_classes",
        "scanned_at",
    ]
    search_fields = ["name", "path"]
    actions = ["rescan"]
    readonly_fields = [
        "name",
        "path",
        "class_names",
        "image_counts",
        "unreadable",
        "missing",
        "scanned_at",
        "created_at",
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = DatasetRegisterForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    def get_fields(self, request, obj=None):
        return self.readonly_fields if obj else ["name", "path"]

    def response_add(self, request, obj, post_url_continue=None):
        _warn_about_problems(self, request, obj)
        return super().response_add(request, obj, post_url_continue)

    @admin.display(description="images per class")
    def image_counts(self, dataset: Dataset) -> str:
        rows = format_html_join(
            "",
            "<tr><th scope='row'>{}</th><td>{}</td><td>{}</td></tr>",
            (
                (name, dataset.counts.get("train", {}).get(name, 0), dataset.counts.get("test", {}).get(name, 0))
                for name in dataset.class_names
            ),
        )
        return format_html("<table><thead><tr><th>class</th><th>train</th><th>test</th></tr></thead>{}</table>", rows)

    def save_form(self, request, form, change):
        # DatasetRegisterForm.clean already scanned and stored the folder.
        return form.registered if not change else super().save_form(request, form, change)

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        if change:
            super().save_related(request, form, formsets, change)

    @admin.display(description="path", ordering="path")
    def short_path(self, dataset: Dataset) -> str:
        return short_path_html(dataset.path)

    @admin.display(description="unreadable files")
    def unreadable_count(self, dataset: Dataset) -> int:
        return len(dataset.unreadable)

    @admin.display(description="missing classes")
    def missing_classes(self, dataset: Dataset) -> str:
        parts = [f"{split}: {', '.join(names)}" for split, names in dataset.missing.items() if names]
        return "; ".join(parts) or "none"

    @admin.action(description="Rescan the selected dataset folders")
    def rescan(self, request: HttpRequest, queryset) -> None:
        for dataset in queryset:
            try:
                services.dataset_register(path=dataset.path, name=dataset.name)
            except services.InvalidDataset as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                self.message_user(request, f"Dataset {dataset.name} rescanned.", messages.SUCCESS)
                dataset.refresh_from_db()
                _warn_about_problems(self, request, dataset)


def _warn_about_problems(model_admin: admin.ModelAdmin, request: HttpRequest, dataset: Dataset) -> None:
    if dataset.problems:
        model_admin.message_user(request, f"Dataset {dataset.name}: {dataset.problems}", messages.WARNING)


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "status",
        "dataset",
        "backbone",
        "mode",
        "epochs",
        "progress_percent",
        "test_macro_f1_rounded",
        "created_at",
        "page_link",
    ]
    list_filter = ["status", "mode", "backbone", "dataset"]
    actions = ["cancel_jobs", "promote_job"]
    add_fieldsets = [
        (None, {"fields": ["dataset", "backbone", "other_backbone", "weights_file", "mode"]}),
        ("Hyper-parameters", {"fields": ["epochs", "batch_size", "learning_rate", "image_size", "seed"]}),
        ("Optional", {"fields": ["split_seed", "ema_decay", "patience"]}),
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = TrainingJobLaunchForm
            kwargs["fields"] = None
        return super().get_form(request, obj, change=change, **kwargs)

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "title": "New training job"}
        return super().add_view(request, form_url, extra_context)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return self.add_fieldsets
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [field.name for field in TrainingJob._meta.fields] + ["page_link"]

    def has_change_permission(self, request, obj=None) -> bool:
        # The change page is read-only, because transitions happen through the actions.
        return super().has_change_permission(request, obj) if obj is None else False

    def get_deleted_objects(self, objs, request):
        # A job whose model serves predictions is listed as protected, so the confirmation
        # page (for one job or the bulk action) refuses the deletion. Without it, the
        # served model's scores would vanish from /training/ while it kept serving.
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        serving = [job for job in objs if job.model_version_id and job.model_version.is_active]
        protected = list(protected) + [
            f"Training job {job.pk}: its model {job.model_version} serves predictions. Activate another model first."
            for job in serving
        ]
        return deleted, model_count, perms_needed, protected

    def delete_model(self, request, obj) -> None:
        self.message_user(request, services.training_job_delete(job=obj), messages.INFO)

    def delete_queryset(self, request, queryset) -> None:
        for job in queryset:
            self.message_user(request, services.training_job_delete(job=job), messages.INFO)

    def save_form(self, request, form, change):
        if change:
            return super().save_form(request, form, change)
        return form.launch(request.user)

    def save_model(self, request, obj, form, change) -> None:
        # training_job_create already stored the job and scheduled its message.
        if change:
            super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:
        # A job has no many-to-many fields, and the launch form never ran save().
        if change:
            super().save_related(request, form, formsets, change)

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(
            request, f"Training job {obj.pk} is launched; its status below updates by itself.", messages.SUCCESS
        )
        return HttpResponseRedirect(reverse("training_jobs:job-detail", args=[obj.pk]))

    @admin.display(description="progress")
    def progress_percent(self, job: TrainingJob) -> str:
        return f"{job.progress * 100:.0f}%"

    @admin.display(description="test macro-F1", ordering="test_macro_f1")
    def test_macro_f1_rounded(self, job: TrainingJob) -> str:
        return "–" if job.test_macro_f1 is None else f"{job.test_macro_f1:.3f}"

    @admin.display(description="job page")
    def page_link(self, job: TrainingJob) -> str:
        return format_html('<a href="{}">open</a>', reverse("training_jobs:job-detail", args=[job.pk]))

    @admin.action(description="Cancel the selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset) -> None:
        for job in queryset:
            try:
                services.training_job_cancel(job=job)
            except services.InvalidTransition as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                self.message_user(request, f"Training job {job.pk}: cancel requested.", messages.SUCCESS)

    @admin.action(description="Promote the selected job's model to serve predictions")
    def promote_job(self, request: HttpRequest, queryset) -> None:
        jobs = list(queryset[:2])
        if len(jobs) != 1:
            self.message_user(request, "Select exactly one job to promote.", messages.ERROR)
            return

        try:
            job = services.training_job_promote(job=jobs[0])
        except services.TrainingJobError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(
                request, f"Model version {job.model_version.version} now serves predictions.", messages.SUCCESS
            )
