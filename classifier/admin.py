from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils.html import format_html

from classifier import selectors, services
from classifier.models import ModelVersion, Prediction, StoredImage, Upload
from classifier.templatetags.element_names import element_name
from heritage_site.admin_display import short_path_html


class PredictedLabelFilter(admin.SimpleListFilter):
    """The latest finished prediction's element, in words."""

    title = "predicted label"
    parameter_name = "predicted_label"

    def lookups(self, request, model_admin):
        return [(name, element_name(name)) for name in selectors.class_names()]

    def queryset(self, request, queryset):
        return queryset.with_label(self.value()) if self.value() else queryset


class CheckedLabelFilter(admin.SimpleListFilter):
    """The staff-checked element, in words, with a "Not checked" choice."""

    title = "checked label"
    parameter_name = "checked_label"
    NOT_CHECKED = "-"

    def lookups(self, request, model_admin):
        return [(self.NOT_CHECKED, "Not checked"), *((name, element_name(name)) for name in selectors.class_names())]

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.NOT_CHECKED:
            return queryset.filter(verified_label="")
        if value:
            return queryset.filter(verified_label=value)
        return queryset


class ModelVersionAddForm(forms.ModelForm):
    """Register a model folder: its class names and scores come from its model.json."""

    version = forms.CharField(
        required=False, max_length=200, help_text="Leave empty to use the model_version of its model.json."
    )

    class Meta:
        model = ModelVersion
        fields = ["model_dir", "version"]

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("model_dir"):
            return cleaned

        try:
            folder, description, version = services.model_folder_check(
                model_dir=cleaned["model_dir"], version=cleaned.get("version") or ""
            )
        except services.InvalidModelFolder as error:
            self.add_error(error.field, error.message)
            return cleaned

        self.instance.version = version
        self.instance.model_dir = str(folder)
        self.instance.class_names = description["class_names"]
        self.instance.metrics = description.get("metrics", {})
        cleaned["version"] = version
        return cleaned


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["version", "is_active", "is_default", "scores", "short_model_dir", "created"]
    list_filter = ["is_active", "is_default"]
    actions = ["activate"]
    # A registered version mirrors its folder's model.json, so nothing is edited by hand.
    change_fields = ["version", "model_dir", "is_active", "is_default", "class_names", "metrics", "created"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ModelVersionAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["model_dir", "version"] if obj is None else self.change_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.change_fields

    @admin.display(description="Scores")
    def scores(self, version: ModelVersion) -> str:
        """Test scores of a promoted job's model or recorded in model.json, else the validation scores."""
        metrics = version.metrics or {}
        test = metrics.get("test") or {}
        if test.get("macro_f1") is not None:
            return f"test macro-F1 {test['macro_f1']:.3f}"
        val = metrics.get("val") or {}
        if val.get("macro_f1") is not None:
            return f"validation macro-F1 {val['macro_f1']:.3f}"
        return "-"

    @admin.display(description="Model folder")
    def short_model_dir(self, version: ModelVersion) -> str:
        return short_path_html(version.model_dir)

    @admin.action(description="Activate the selected model version")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version to activate.", messages.ERROR)
            return

        try:
            version = services.model_version_activate(queryset.get())
        except services.ModelVersionUnusable as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        self.message_user(request, f"Model version {version.version} is active; workers switch at their next batch.")


class PredictionInline(admin.TabularInline):
    model = Prediction
    extra = 0
    can_delete = False
    fields = ["status", "label", "model_version", "error", "created", "finished_at", "inference_ms"]
    readonly_fields = fields


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "preview",
        "original_name",
        "owner",
        "status",
        "label",
        "verified_label",
        "is_hidden",
        "created",
    ]
    list_filter = ["is_hidden", "latest_prediction__status", PredictedLabelFilter, CheckedLabelFilter]
    search_fields = ["original_name", "stored_image__sha256"]
    list_select_related = ["stored_image", "owner", "latest_prediction"]
    readonly_fields = [
        "stored_image",
        "owner",
        "original_name",
        "latest_prediction",
        "created",
        "verified_label",
        "verified_by",
        "verified_at",
    ]
    inlines = [PredictionInline]
    actions = ["hide", "show", "predict_again", "confirm_predicted_label"]

    @admin.display(description="Image")
    def preview(self, upload: Upload) -> str:
        url = reverse("classifier:thumbnail-file", args=[upload.pk])
        return format_html('<img src="{}" alt="" width="64" loading="lazy">', url)

    @admin.display(description="Status")
    def status(self, upload: Upload) -> str:
        return upload.latest_prediction.status if upload.latest_prediction else "-"

    @admin.display(description="Label")
    def label(self, upload: Upload) -> str:
        return upload.latest_prediction.label if upload.latest_prediction else "-"

    # Through the service, so that stored files go with the last upload that uses them.
    def delete_model(self, request, obj: Upload) -> None:
        services.upload_delete(obj)

    def delete_queryset(self, request, queryset) -> None:
        for upload in queryset:
            services.upload_delete(upload)

    @admin.action(description="Confirm the predicted label of the selected images")
    def confirm_predicted_label(self, request, queryset):
        confirmed = already_checked = 0
        for upload in queryset.select_related("latest_prediction"):
            prediction = upload.latest_prediction
            if upload.verified_label:
                # Never overwrite a label staff set, which may be a correction.
                already_checked += 1
                continue
            if prediction is None or prediction.status != Prediction.Status.DONE:
                continue
            try:
                services.upload_set_verified_label(upload, label=prediction.label, user=request.user)
            except services.InvalidLabel as error:
                self.message_user(request, f"Image {upload.pk}: {error}", messages.WARNING)
                continue
            confirmed += 1
        skipped = queryset.count() - confirmed - already_checked
        message = f"{confirmed} label{pluralize(confirmed)} confirmed."
        if already_checked:
            message += f" {already_checked} already checked, left as they were."
        if skipped:
            message += (
                f" {skipped} image{pluralize(skipped)} skipped: no finished prediction, "
                "or its label is not a class of the active model."
            )
        self.message_user(request, message)

    @admin.action(description="Hide the selected images from the gallery")
    def hide(self, request, queryset):
        for upload in queryset:
            services.upload_set_hidden(upload, hidden=True)
        count = queryset.count()
        self.message_user(request, f"{count} image{pluralize(count)} hidden.")

    @admin.action(description="Show the selected images in the gallery")
    def show(self, request, queryset):
        for upload in queryset:
            services.upload_set_hidden(upload, hidden=False)
        count = queryset.count()
        self.message_user(request, f"{count} image{pluralize(count)} visible.")

    @admin.action(description="Predict again with the active model")
    def predict_again(self, request, queryset):
        for upload in queryset:
            services.prediction_request(upload)
        self.message_user(request, f"{queryset.count()} predictions queued.")


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["id", "upload", "status", "label", "model_version", "attempts", "created", "finished_at"]
    list_filter = ["status", "model_version", "label"]
    list_select_related = ["upload", "model_version"]
    readonly_fields = [field.name for field in Prediction._meta.fields]
    actions = ["retry"]

    @admin.action(description="Retry the selected failed predictions")
    def retry(self, request, queryset):
        failed = queryset.filter(status=Prediction.Status.FAILED).select_related("upload")
        count = 0
        for prediction in failed:
            services.prediction_request(prediction.upload)
            count += 1
        self.message_user(request, f"{count} failed predictions queued again; others were left as they are.")


@admin.register(StoredImage)
class StoredImageAdmin(admin.ModelAdmin):
    list_display = ["sha256", "format", "width", "height", "byte_size", "created"]
    readonly_fields = [field.name for field in StoredImage._meta.fields]

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting the last upload of an image deletes the image and its files.
        return False
