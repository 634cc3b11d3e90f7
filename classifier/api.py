"""REST API of the classifier, mounted under ``/api/v1/``."""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotAuthenticated, NotFound, Throttled
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from classifier import selectors, services
from classifier.imaging import ImageRejected
from classifier.models import ModelVersion, Prediction, Upload
from heritage_site.api import IsStaff, Pagination, error_response, rate_text


class UploadAnonThrottle(AnonRateThrottle):
    scope = "uploads_anon"


class UploadUserThrottle(UserRateThrottle):
    scope = "uploads_user"

    def allow_request(self, request, view) -> bool:
        if request.user.is_authenticated and request.user.is_staff:
            return True
        return super().allow_request(request, view)


def throttle_message(user, wait_seconds: float) -> str:
    """Say which upload limit was reached and how long to wait, in minutes once that is over 90 s."""
    # The throttles count requests ("uploads"): one photo each from the upload
    # page, up to UPLOAD_MAX_FILES from the API or the plain form.
    if user.is_authenticated:
        limit = f"the limit is {rate_text('uploads_user', 'uploads')} for each account"
    else:
        limit = (
            f"the limit is {rate_text('uploads_anon', 'uploads')} for visitors who are not logged in "
            f"(log in for {rate_text('uploads_user', 'uploads')})"
        )
    seconds = max(1, math.ceil(wait_seconds))
    if seconds <= 90:
        wait = f"{seconds} second{'' if seconds == 1 else 's'}"
    else:
        wait = f"about {math.ceil(seconds / 60)} minutes"
    return f"Too many uploads: {limit}. Try again in {wait}."


class PredictionOutput(serializers.Serializer):
    label = serializers.CharField()
    probabilities = serializers.DictField(child=serializers.FloatField(), source="ordered_probabilities")
    confidence = serializers.FloatField(
        allow_null=True, help_text="Probability of the label, the value order=confidence sorts by."
    )
    model_version = serializers.CharField(source="model_version.version", default=None, allow_null=True)
    predicted_at = serializers.DateTimeField(source="finished_at")


class ImageOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.SerializerMethodField()
    prediction = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    original_url = serializers.SerializerMethodField(
        help_text="The uploaded file, metadata included; null unless the uploader or staff asks."
    )
    verified_label = serializers.SerializerMethodField(
        help_text="The element staff confirmed for this photo; null until someone checks it."
    )
    width = serializers.IntegerField(source="stored_image.width")
    height = serializers.IntegerField(source="stored_image.height")
    hidden = serializers.BooleanField(
        source="is_hidden", help_text="Hidden from the public gallery; only the uploader and staff see such images."
    )
    created = serializers.DateTimeField()

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    @extend_schema_field(serializers.ChoiceField(choices=Prediction.Status.choices))
    def get_status(self, upload: Upload) -> str:
        prediction = upload.latest_prediction
        return prediction.status if prediction else Prediction.Status.PENDING

    @extend_schema_field(PredictionOutput(allow_null=True))
    def get_prediction(self, upload: Upload) -> dict | None:
        prediction = upload.latest_prediction
        if prediction is None or prediction.status != Prediction.Status.DONE:
            return None
        return PredictionOutput(prediction).data

    def get_error(self, upload: Upload) -> str | None:
        prediction = upload.latest_prediction
        if prediction is None or prediction.status != Prediction.Status.FAILED:
            return None
        request = self.context.get("request")
        return prediction.error if request and request.user.is_staff else prediction.public_error

    def get_verified_label(self, upload: Upload) -> str | None:
        return upload.verified_label or None

    def get_url(self, upload: Upload) -> str:
        return self._absolute(reverse("api-v1:image-detail", args=[upload.pk]))

    def get_page_url(self, upload: Upload) -> str:
        return self._absolute(reverse("classifier:detail", args=[upload.pk]))

    def get_image_url(self, upload: Upload) -> str:
        return self._absolute(reverse("classifier:display-file", args=[upload.pk]))

    def get_thumbnail_url(self, upload: Upload) -> str:
        return self._absolute(reverse("classifier:thumbnail-file", args=[upload.pk]))

    def get_original_url(self, upload: Upload) -> str | None:
        request = self.context.get("request")
        if request is None or not selectors.can_see_private(request.user, upload):
            return None
        return self._absolute(reverse("classifier:original-file", args=[upload.pk]))


class ApiErrorDetail(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable reason, e.g. not_an_image or throttled.")
    message = serializers.CharField(help_text="The reason in words, for people.")


class ApiErrorOutput(serializers.Serializer):
    error = ApiErrorDetail()


class UploadResultsOutput(serializers.Serializer):
    results = serializers.ListField(
        child=serializers.DictField(),
        help_text=(
            "One entry per file, in request order: an image with `file`, the uploaded file name, "
            "or {file, error} for a rejected file."
        ),
    )


def _parse_wait(raw: str | None) -> float:
    """Return the ``wait`` query parameter in seconds; raises ValueError with a message."""
    if raw in (None, ""):
        return 0.0

    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"wait={raw!r} is not a number of seconds.") from None
    if not 0 <= seconds <= settings.API_MAX_WAIT_SECONDS:
        raise ValueError(f"wait must be between 0 and {settings.API_MAX_WAIT_SECONDS} seconds, got {raw}.")
    return seconds


def _wait_for_predictions(prediction_ids: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not Prediction.objects.filter(pk__in=prediction_ids, status=Prediction.Status.PENDING).exists():
            return
        time.sleep(0.02)


def create_uploads(files, user) -> tuple[list[Upload | None], list[dict]]:
    """Run ``upload_create_from_file`` for each file; one bad file does not stop the others.

    Returns the uploads (None for a rejected file) and the result entries of
    the rejected ones, both in request order.
    """
    uploads, entries = [], []
    for uploaded_file in files:
        try:
            uploads.append(services.upload_create_from_file(uploaded_file=uploaded_file, owner=user))
            entries.append(None)
        except ImageRejected as rejection:
            uploads.append(None)
            entries.append(
                {"file": uploaded_file.name, "error": {"code": rejection.code, "message": rejection.message}}
            )
    return uploads, entries


BOOLEAN_INVALID = "must be true or false (also 1 or 0, yes or no, on or off)."


class ImageCollectionApi(APIView):
    """List the public gallery (GET) or upload images (POST)."""

    # Multipart only: a urlencoded body cannot carry a file.
    parser_classes = [MultiPartParser]

    class ListFilter(serializers.Serializer):
        label = serializers.CharField(required=False, allow_blank=True)
        mine = serializers.BooleanField(required=False, default=False, error_messages={"invalid": BOOLEAN_INVALID})
        checked = serializers.BooleanField(
            required=False, allow_null=True, default=None, error_messages={"invalid": BOOLEAN_INVALID}
        )
        order = serializers.ChoiceField(
            choices=["newest", "confidence"],
            required=False,
            default="newest",
            error_messages={"invalid_choice": "{input!r} is not an order; use newest or confidence."},
        )

        def validate_label(self, value: str) -> str:
            names = selectors.class_names()
            if value and value not in names:
                raise serializers.ValidationError(f"unknown class {value!r}; expected one of: {', '.join(names)}.")
            return value

    class UploadInput(serializers.Serializer):
        file = serializers.ListField(child=serializers.FileField(allow_empty_file=True), min_length=1)

    def get_throttles(self):
        # A POST without files, or with too many, is rejected before any work, so
        # it does not use up the upload limit. Rejected photos still count, because checking them costs work.
        if self.request.method == "POST" and 1 <= len(self.request.FILES.getlist("file")) <= settings.UPLOAD_MAX_FILES:
            return [UploadAnonThrottle(), UploadUserThrottle()]
        return []

    def throttled(self, request, wait):
        # DRF's own message ends in "Expected available in 3556 seconds.";
        # this one names the limit. `wait` still sets the Retry-After header.
        exception = Throttled(detail=throttle_message(request.user, wait or 1))
        exception.wait = math.ceil(wait) if wait else None
        raise exception

    @extend_schema(
        operation_id="images_list",
        summary="List images",
        description="The public gallery, newest first, or with mine=true the requester's own uploads.",
        parameters=[
            OpenApiParameter("label", str, description="Only images whose prediction is this class."),
            OpenApiParameter(
                "mine", bool, description="Only the requester's own uploads, hidden ones included (login or token)."
            ),
            OpenApiParameter(
                "checked", bool, description="true: only images whose element staff checked; false: only the others."
            ),
            OpenApiParameter(
                "order",
                str,
                enum=["newest", "confidence"],
                description="newest (default), or confidence: the least confident predictions first, "
                "then images without a finished prediction.",
            ),
            OpenApiParameter("page", int, description="Page number, from 1."),
        ],
        responses=ImageOutput(many=True),
    )
    def get(self, request):
        filters = self.ListFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)

        label = filters.validated_data.get("label") or None
        options = {
            "label": label,
            "checked": filters.validated_data["checked"],
            "least_confident_first": filters.validated_data["order"] == "confidence",
        }
        if filters.validated_data["mine"]:
            if not request.user.is_authenticated:
                raise NotAuthenticated("mine=true lists your own uploads: log in or send an API token.")
            uploads = selectors.upload_list_for_owner(request.user, **options)
        else:
            uploads = selectors.upload_list_public(**options)
        paginator = Pagination()
        page = paginator.paginate_queryset(uploads, request, view=self)
        return paginator.get_paginated_response(ImageOutput(page, many=True, context={"request": request}).data)

    @extend_schema(
        operation_id="images_upload",
        request=UploadInput,
        parameters=[
            OpenApiParameter(
                "wait",
                float,
                description=(
                    f"Seconds to wait for the predictions before answering, at most {settings.API_MAX_WAIT_SECONDS}."
                ),
            )
        ],
        summary="Upload images",
        description=(
            "Send one or more photos as multipart fields named `file`. Each file gets an entry in `results`, "
            "in request order: an image (its `status` is pending until a worker stores the prediction) or "
            "`{file, error}` for a rejected file."
        ),
        responses={201: UploadResultsOutput, 400: UploadResultsOutput, 429: ApiErrorOutput},
        examples=[
            OpenApiExample(
                "One accepted photo and one rejected file",
                response_only=True,
                status_codes=["201"],
                value={
                    "results": [
                        {
                            "file": "nave.jpg",
                            "id": 41,
                            "status": "done",
                            "prediction": {
                                "label": "vault",
                                "probabilities": {"altar": 0.01, "apse": 0.02, "vault": 0.91, "...": 0.06},
                                "model_version": "efficientnet_lite2-eb3b2c4747",
                                "predicted_at": "2026-12-05T08:00:00Z",
                            },
                            "error": None,
                            "url": "http://localhost:8000/api/v1/images/41/",
                            "page_url": "http://localhost:8000/images/41/",
                            "image_url": "http://localhost:8000/images/41/display.jpg",
                            "thumbnail_url": "http://localhost:8000/images/41/thumbnail.jpg",
                            "original_url": None,
                            "width": 1600,
                            "height": 1200,
                            "created": "2026-12-05T08:00:00Z",
                        },
                        {
                            "file": "notes.txt",
                            "error": {"code": "not_an_image", "message": "“notes.txt” is not an image. ..."},
                        },
                    ]
                },
            ),
            OpenApiExample(
                "Throttled",
                response_only=True,
                status_codes=["429"],
                value={"error": {"code": "throttled", "message": "Too many uploads: the limit is 30 per hour ..."}},
            ),
        ],
    )
    def post(self, request):
        try:
            wait_seconds = _parse_wait(request.query_params.get("wait"))
        except ValueError as error:
            return error_response("invalid_wait", str(error))

        files = request.FILES.getlist("file")
        if not files:
            return error_response("no_files", "Attach one or more images as multipart fields named 'file'.")
        if len(files) > settings.UPLOAD_MAX_FILES:
            return error_response(
                "too_many_files", f"{len(files)} files sent; upload at most {settings.UPLOAD_MAX_FILES} per request."
            )

        uploads, entries = create_uploads(files, request.user)
        accepted = [upload for upload in uploads if upload is not None]
        if wait_seconds and accepted:
            _wait_for_predictions([upload.latest_prediction_id for upload in accepted], wait_seconds)

        fresh = {
            upload.pk: upload for upload in selectors.uploads_by_ids_for_user([u.pk for u in accepted], request.user)
        }
        # Each entry names its file, so a client can match results to files
        # without relying on their order.
        results = []
        for uploaded_file, upload, entry in zip(files, uploads, entries, strict=True):
            if upload is None:
                results.append(entry)
            else:
                image = ImageOutput(fresh[upload.pk], context={"request": request}).data
                results.append({"file": uploaded_file.name, **image})
        response_status = status.HTTP_201_CREATED if accepted else status.HTTP_400_BAD_REQUEST
        return Response({"results": results}, status=response_status)


def _visible_upload(upload_id: int, user) -> Upload:
    """Return the upload `user` may see, or raise NotFound; hidden and private uploads count as not found."""
    upload = selectors.upload_get_for_user(upload_id, user)
    if upload is None:
        raise NotFound(f"Image {upload_id} not found.")
    return upload


class ImageDetailApi(APIView):
    @extend_schema(operation_id="images_retrieve", responses=ImageOutput)
    def get(self, request, upload_id: int):
        upload = _visible_upload(upload_id, request.user)
        return Response(ImageOutput(upload, context={"request": request}).data)

    @extend_schema(operation_id="images_destroy", responses={204: None})
    def delete(self, request, upload_id: int):
        """Delete an image and its predictions (the uploader and staff only)."""
        upload = _visible_upload(upload_id, request.user)
        if not request.user.is_authenticated:
            raise NotAuthenticated("Log in or send an API token to delete your images.")
        if not selectors.can_see_private(request.user, upload):
            return error_response(
                "permission_denied", "Only the uploader or staff may delete this image.", status.HTTP_403_FORBIDDEN
            )

        services.upload_delete(upload)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ImageHideApi(APIView):
    """Hide an image from the public gallery and API, or show it again (the uploader and staff only)."""

    class Input(serializers.Serializer):
        hidden = serializers.BooleanField(help_text="true hides the image, false shows it again.")

    @extend_schema(operation_id="images_hide", request=Input, responses=ImageOutput)
    def post(self, request, upload_id: int):
        if not request.user.is_authenticated:
            raise NotAuthenticated("Log in or send an API token to hide your images.")
        serializer = self.Input(data=request.data)
        serializer.is_valid(raise_exception=True)

        upload = _visible_upload(upload_id, request.user)
        if not selectors.can_see_private(request.user, upload):
            return error_response(
                "permission_denied",
                "Only the uploader or staff may hide or show this image.",
                status.HTTP_403_FORBIDDEN,
            )

        services.upload_set_hidden(upload, hidden=serializer.validated_data["hidden"])
        return Response(ImageOutput(upload, context={"request": request}).data)


class ImageLabelApi(APIView):
    """Record the element staff confirmed for an image; null or an empty label clears it (staff only)."""

    permission_classes = [IsStaff]

    class Input(serializers.Serializer):
        class Meta:
            ref_name = "ImageLabel"

        label = serializers.CharField(allow_null=True, allow_blank=True, max_length=100)

    @extend_schema(operation_id="images_label", request=Input, responses=ImageOutput)
    def post(self, request, upload_id: int):
        serializer = self.Input(data=request.data)
        serializer.is_valid(raise_exception=True)

        upload = _visible_upload(upload_id, request.user)

        try:
            services.upload_set_verified_label(
                upload, label=serializer.validated_data["label"] or "", user=request.user
            )
        except services.InvalidLabel as error:
            return error_response("invalid_label", str(error), status.HTTP_400_BAD_REQUEST)
        return Response(ImageOutput(upload, context={"request": request}).data)


class ImagePredictApi(APIView):
    """Queue a new prediction with the active model, e.g. to retry a failed one (staff only)."""

    permission_classes = [IsStaff]

    @extend_schema(operation_id="images_predict", request=None, responses={202: ImageOutput})
    def post(self, request, upload_id: int):
        upload = _visible_upload(upload_id, request.user)

        services.prediction_request(upload)
        upload = selectors.upload_get_for_user(upload_id, request.user)
        return Response(ImageOutput(upload, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)


class ModelVersionOutput(serializers.ModelSerializer):
    metrics = serializers.SerializerMethodField(
        help_text="Scores as model.json stores them: `val` and `test`, each null or an object with at least "
        "`accuracy` and `macro_f1`; a recorded `test` also has `per_class`, `confusion_matrix`, `class_names`, "
        "`n` and `split_fingerprint`. A promoted model also has `training_job`, the id of the job it came from."
    )

    class Meta:
        model = ModelVersion
        fields = ["id", "version", "is_active", "is_default", "class_names", "metrics", "created"]

    @extend_schema_field(serializers.JSONField())
    def get_metrics(self, version: ModelVersion) -> dict:
        metrics = dict(version.metrics or {})
        metrics.setdefault("val", None)
        metrics.setdefault("test", None)
        return metrics


class ModelVersionListApi(APIView):
    @extend_schema(operation_id="models_list", responses=ModelVersionOutput(many=True))
    def get(self, request):
        services.model_version_ensure_default()
        return Response(ModelVersionOutput(selectors.model_version_list(), many=True).data)
