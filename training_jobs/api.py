"""REST API of datasets and training jobs, mounted under /api/v1/.

Anyone may read succeeded jobs, and staff also see queued, running, failed
and cancelled ones. Creating, cancelling and promoting require a staff user.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from heritage_site.api import IsStaff, error_response
from training_jobs import presenters, selectors, services
from training_jobs.models import Dataset, TrainingJob

# The list is not paginated, so it returns at most this many jobs, newest first.
JOB_LIST_LIMIT = 200


def _is_staff(request: Request) -> bool:
    return IsStaff().has_permission(request, None)


def _get_job(request: Request, job_id: int) -> TrainingJob:
    job = selectors.training_job_get(job_id=job_id, include_unfinished=_is_staff(request))
    if job is None:
        raise Http404(f"Training job {job_id} not found.")
    return job


# Output serializers: they render the presenters' dicts and document them in the schema.


class DatasetRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class JobSettingsSerializer(serializers.Serializer):
    backbone = serializers.CharField()
    weights_file = serializers.CharField()
    mode = serializers.ChoiceField(choices=TrainingJob.Mode.choices)
    epochs = serializers.IntegerField()
    batch_size = serializers.IntegerField()
    learning_rate = serializers.FloatField()
    image_size = serializers.IntegerField()
    seed = serializers.IntegerField()
    split_seed = serializers.IntegerField(allow_null=True)
    ema_decay = serializers.FloatField(allow_null=True)
    patience = serializers.IntegerField(allow_null=True)


class ClassScoreSerializer(serializers.Serializer):
    precision = serializers.FloatField()
    recall = serializers.FloatField()
    f1 = serializers.FloatField()
    support = serializers.IntegerField()


class SplitMetricsSerializer(serializers.Serializer):
    accuracy = serializers.FloatField()
    macro_f1 = serializers.FloatField()
    per_class = serializers.DictField(child=ClassScoreSerializer())
    confusion_matrix = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()), allow_null=True
    )
    class_names = serializers.ListField(child=serializers.CharField())


class EpochSerializer(serializers.Serializer):
    epoch = serializers.IntegerField()
    train_loss = serializers.FloatField()
    val_accuracy = serializers.FloatField()
    val_macro_f1 = serializers.FloatField()
    learning_rate = serializers.FloatField(allow_null=True)
    seconds = serializers.FloatField(allow_null=True)


class AbsoluteURLField(serializers.CharField):
    """A site path rendered as an absolute URL, as the image API's `url` is."""

    def to_representation(self, value):
        request = self.context.get("request")
        return request.build_absolute_uri(value) if request is not None else value


class JobSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = AbsoluteURLField(help_text="The job's web page.")
    status = serializers.ChoiceField(choices=TrainingJob.Status.choices)
    phase = serializers.ChoiceField(choices=TrainingJob.Phase.choices)
    dataset = DatasetRefSerializer()
    config = JobSettingsSerializer()
    progress = serializers.FloatField(help_text="Share of all training batches done, from 0 to 1.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    test_accuracy = serializers.FloatField(allow_null=True)
    test_macro_f1 = serializers.FloatField(allow_null=True)
    promoted_at = serializers.DateTimeField(allow_null=True)


class JobDetailSerializer(JobSummarySerializer):
    is_finished = serializers.BooleanField()
    cancel_requested = serializers.BooleanField()
    epoch_progress = serializers.FloatField(help_text="Share of the current epoch's batches done, from 0 to 1.")
    current_epoch = serializers.IntegerField()
    total_epochs = serializers.IntegerField()
    batch = serializers.IntegerField()
    batches = serializers.IntegerField()
    last_loss = serializers.FloatField(allow_null=True)
    queue_position = serializers.IntegerField(
        allow_null=True, help_text="Queued or running jobs ahead of this queued one; null once it is not queued."
    )
    elapsed_seconds = serializers.FloatField(allow_null=True)
    remaining_seconds = serializers.FloatField(allow_null=True, help_text="Estimate from the share of batches done.")
    failure_reason = serializers.CharField()
    epochs = EpochSerializer(many=True, help_text="Training loss and validation scores per finished epoch.")
    best_epoch = serializers.IntegerField(allow_null=True)
    test_metrics = SplitMetricsSerializer(allow_null=True)
    test_split_fingerprint = serializers.CharField(
        help_text="Hash of the scored test photos and their labels; empty until the job succeeded."
    )
    comparable_with_published = serializers.BooleanField(
        help_text="Whether the test scores were measured on AHE's official test split, like the published F1."
    )
    val_metrics = SplitMetricsSerializer(allow_null=True)
    downloads = serializers.DictField(child=AbsoluteURLField())
    log_tail = serializers.CharField(required=False, help_text="Staff only.")


# Datasets


class DatasetListApi(APIView):
    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "Dataset"

        id = serializers.IntegerField()
        name = serializers.CharField()
        class_names = serializers.ListField(child=serializers.CharField())
        counts = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))
        train_images = serializers.IntegerField()
        test_images = serializers.IntegerField()
        unreadable = serializers.IntegerField(help_text="Number of unreadable image files.")
        missing = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
        scanned_at = serializers.DateTimeField()
        path = serializers.CharField(required=False, help_text="Staff only.")
        unreadable_files = serializers.ListField(child=serializers.CharField(), required=False, help_text="Staff only.")

    @extend_schema(responses=OutputSerializer(many=True), tags=["training"])
    def get(self, request: Request) -> Response:
        include_path = _is_staff(request)
        data = [presenters.dataset_summary(dataset, include_path=include_path) for dataset in selectors.dataset_list()]
        return Response(self.OutputSerializer(data, many=True).data)


# Jobs


def _all_setting_errors(serializer: serializers.Serializer, data) -> dict[str, list[str]]:
    """Add the job rules' errors for the fields that parsed to the serializer's own errors.

    DRF stops at type errors, so without this a request with one unparsable
    value would learn about its other invalid settings only on the next try.
    """
    errors = {field: list(messages) for field, messages in serializer.errors.items()}
    parsed = {}
    for name, field in serializer.fields.items():
        if name in errors or name not in data:
            continue
        try:
            parsed[name] = field.run_validation(data[name])
        except serializers.ValidationError:
            continue
    dataset = parsed.pop("dataset", None)
    values = {name: value for name, value in (selectors.job_defaults() | parsed).items() if name not in errors}
    for field, message in services.training_job_settings_errors(dataset=dataset, values=values).items():
        errors.setdefault(field, []).append(message)
    return errors


class TrainingJobListCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "TrainingJobCreate"

        dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.all())
        backbone = serializers.CharField(required=False, max_length=100)
        weights_file = serializers.CharField(required=False, allow_blank=True, max_length=500)
        mode = serializers.ChoiceField(choices=TrainingJob.Mode.values, required=False)
        epochs = serializers.IntegerField(required=False)
        batch_size = serializers.IntegerField(required=False)
        learning_rate = serializers.FloatField(required=False)
        image_size = serializers.IntegerField(required=False)
        seed = serializers.IntegerField(required=False)
        split_seed = serializers.IntegerField(required=False, allow_null=True)
        ema_decay = serializers.FloatField(required=False, allow_null=True)
        patience = serializers.IntegerField(required=False, allow_null=True)

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsStaff()]
        return [permissions.AllowAny()]

    @extend_schema(
        responses=JobSummarySerializer(many=True),
        parameters=[
            OpenApiParameter("status", str, enum=TrainingJob.Status.values, description="Only jobs in this state.")
        ],
        tags=["training"],
    )
    def get(self, request: Request) -> Response:
        status_filter = request.query_params.get("status")
        if status_filter is not None and status_filter not in TrainingJob.Status.values:
            return error_response(
                "invalid_status",
                f"Unknown status {status_filter!r}: use one of {', '.join(TrainingJob.Status.values)}.",
            )

        jobs = selectors.training_job_list(include_unfinished=_is_staff(request))
        if status_filter is not None:
            jobs = jobs.filter(status=status_filter)
        data = [presenters.job_summary(job) for job in jobs[:JOB_LIST_LIMIT]]
        return Response(JobSummarySerializer(data, many=True, context={"request": request}).data)

    @extend_schema(request=InputSerializer, responses={201: JobDetailSerializer}, tags=["training"])
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        # A misspelt setting would otherwise launch the default recipe, a run of most of an hour.
        sent = set(request.data.keys()) if hasattr(request.data, "keys") else set()
        unknown = sorted(sent - set(serializer.fields) - {"csrfmiddlewaretoken"})
        if not serializer.is_valid() or unknown:
            errors = _all_setting_errors(serializer, request.data)
            for name in unknown:
                errors[name] = [f"Unknown setting. The settings are: {', '.join(serializer.fields)}."]
            raise serializers.ValidationError(errors)
        values = dict(serializer.validated_data)
        dataset = values.pop("dataset")

        try:
            job = services.training_job_create(dataset=dataset, created_by=request.user, **values)
        except services.InvalidJobSettings as error:
            raise serializers.ValidationError({field: [message] for field, message in error.errors.items()}) from error

        data = presenters.job_detail(job, include_log=True)
        return Response(JobDetailSerializer(data, context={"request": request}).data, status=status.HTTP_201_CREATED)


class TrainingJobDetailApi(APIView):
    @extend_schema(responses=JobDetailSerializer, tags=["training"])
    def get(self, request: Request, job_id: int) -> Response:
        job = _get_job(request, job_id)
        if job.status == TrainingJob.Status.RUNNING:
            services.training_job_fail_lost()
            job.refresh_from_db()

        data = presenters.job_detail(job, include_log=_is_staff(request))
        return Response(JobDetailSerializer(data, context={"request": request}).data)


class TrainingJobCancelApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(request=None, responses=JobDetailSerializer, tags=["training"])
    def post(self, request: Request, job_id: int) -> Response:
        job = _get_job(request, job_id)

        try:
            job = services.training_job_cancel(job=job)
        except services.InvalidTransition as error:
            return error_response("invalid_transition", str(error), status.HTTP_409_CONFLICT)

        return Response(
            JobDetailSerializer(presenters.job_detail(job, include_log=True), context={"request": request}).data
        )


class TrainingJobPromoteApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(request=None, responses=JobDetailSerializer, tags=["training"])
    def post(self, request: Request, job_id: int) -> Response:
        job = _get_job(request, job_id)

        try:
            job = services.training_job_promote(job=job)
        except services.InvalidTransition as error:
            return error_response("invalid_transition", str(error), status.HTTP_409_CONFLICT)
        except services.TrainingJobError as error:
            return error_response("promotion_failed", str(error), status.HTTP_400_BAD_REQUEST)

        return Response(
            JobDetailSerializer(presenters.job_detail(job, include_log=True), context={"request": request}).data
        )


class CompareCellSerializer(serializers.Serializer):
    f1 = serializers.FloatField(allow_null=True)
    beats_paper = serializers.BooleanField(help_text="True where the F1 is above the paper's for that class.")


class CompareRowSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    job_id = serializers.IntegerField(allow_null=True)
    reference = serializers.BooleanField(help_text="True for the published results.")
    comparable = serializers.BooleanField(
        help_text="True when the row was scored on AHE's official test split, like the published results; "
        "only then can its cells beat the paper."
    )
    macro_f1 = serializers.FloatField(allow_null=True)
    accuracy = serializers.FloatField(allow_null=True)
    cells = CompareCellSerializer(many=True, help_text="One cell per class, in `classes` order.")


class CompareSerializer(serializers.Serializer):
    classes = serializers.ListField(child=serializers.CharField())
    rows = CompareRowSerializer(many=True, help_text="Reference rows first, then one row per job.")


class TrainingJobCompareApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "ids", str, description="Comma-separated job ids. Without it, the 5 newest succeeded jobs."
            )
        ],
        responses=CompareSerializer,
        tags=["training"],
    )
    def get(self, request: Request) -> Response:
        try:
            jobs = selectors.comparison_jobs(request.query_params.get("ids", ""))
        except ValueError as error:
            return error_response("invalid", str(error))

        return Response(CompareSerializer(selectors.comparison_table(jobs)).data)
