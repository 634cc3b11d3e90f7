import pytest

from classifier.models import ModelVersion
from training_jobs import services
from training_jobs.models import TrainingJob

Status = TrainingJob.Status


@pytest.fixture
def sent(monkeypatch):
    messages = []
    monkeypatch.setattr(services, "training_job_enqueue", messages.append)
    return messages


def write_requests(job_id: int):
    return [
        ("post", "/api/v1/training-jobs/", {"dataset": 1}),
        ("post", f"/api/v1/training-jobs/{job_id}/cancel/", {}),
        ("post", f"/api/v1/training-jobs/{job_id}/promote/", {}),
    ]


@pytest.mark.parametrize("persona", ["anonymous_client", "user_client"])
def test_writes_rejected_without_staff(request, persona, succeeded_job, make_job):
    client = request.getfixturevalue(persona)
    queued = make_job()

    for method, url, body in write_requests(queued.pk) + write_requests(succeeded_job.pk):
        response = getattr(client, method)(url, body, content_type="application/json")
        expected = 401 if persona == "anonymous_client" else 403
        assert response.status_code == expected, (url, response.status_code)
        assert "error" in response.json()

    queued.refresh_from_db()
    assert queued.status == Status.QUEUED
    assert TrainingJob.objects.count() == 2
    assert not ModelVersion.objects.filter(training_jobs=succeeded_job).exists()


def test_create_returns_201_with_defaults(staff_client, dataset, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/api/v1/training-jobs/", {"dataset": dataset.pk, "epochs": 2}, content_type="application/json"
        )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued"
    assert body["config"]["epochs"] == 2
    assert body["config"]["backbone"] == "efficientnet_lite2"
    assert body["config"]["mode"] == "finetune"
    assert body["progress"] == 0
    assert body["epochs"] == []
    assert body["test_metrics"] is None
    assert sent == [body["id"]]


def test_create_accepts_optional_settings(staff_client, dataset, sent):
    response = staff_client.post(
        "/api/v1/training-jobs/",
        {"dataset": dataset.pk, "split_seed": 1, "ema_decay": 0.998, "patience": None},
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    config = response.json()["config"]
    assert config["split_seed"] == 1
    assert config["ema_decay"] == 0.998
    assert config["patience"] is None


def test_create_rejects_invalid_optional_settings(staff_client, dataset, sent):
    response = staff_client.post(
        "/api/v1/training-jobs/",
        {"dataset": dataset.pk, "ema_decay": 1.5, "patience": 0},
        content_type="application/json",
    )

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert "ema_decay must be above 0 and below 1" in fields["ema_decay"][0]
    assert "patience must be a whole number from 1 to 1000" in fields["patience"][0]
    assert not TrainingJob.objects.exists()


def test_create_rejects_invalid_value_naming_field(staff_client, dataset, sent):
    response = staff_client.post(
        "/api/v1/training-jobs/", {"dataset": dataset.pk, "batch_size": 1}, content_type="application/json"
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert "batch_size" in error["fields"]
    assert "batch_size" in error["message"]
    assert not TrainingJob.objects.exists()


def test_create_rejects_unknown_architecture(staff_client, dataset, sent):
    response = staff_client.post(
        "/api/v1/training-jobs/",
        {"dataset": dataset.pk, "backbone": "convnext_tiniest"},
        content_type="application/json",
    )

    assert response.status_code == 400
    (message,) = response.json()["error"]["fields"]["backbone"]
    assert message.startswith("backbone 'convnext_tiniest' is not a timm ")
    assert "did you mean convnext_tiny" in message
    assert message.endswith(
        "Without a weights_file, only efficientnet_lite0, efficientnet_lite1, efficientnet_lite2 can be trained "
        "(their ImageNet weights are installed)."
    )
    assert not TrainingJob.objects.exists()


def test_create_rejects_unknown_setting(staff_client, dataset, sent):
    response = staff_client.post(
        "/api/v1/training-jobs/", {"dataset": dataset.pk, "epoch": 2, "epochs": 0}, content_type="application/json"
    )

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"epoch", "epochs"}
    assert fields["epoch"][0].startswith(
        "Unknown setting. The settings are: dataset, backbone, weights_file, mode, epochs,"
    )
    assert not TrainingJob.objects.exists()


def test_create_rejects_a_list_body(staff_client, dataset, sent):
    response = staff_client.post("/api/v1/training-jobs/", [dataset.pk], content_type="application/json")

    assert response.status_code == 400
    assert not TrainingJob.objects.exists()


def test_create_names_every_invalid_field(staff_client, dataset, sent):
    response = staff_client.post(
        "/api/v1/training-jobs/",
        {"dataset": dataset.pk, "epochs": 0, "learning_rate": 2.0, "seed": -4},
        content_type="application/json",
    )

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"epochs", "learning_rate", "seed"}
    assert fields["seed"] == ["seed must be a whole number from 0 to 2147483647, not -4."]
    assert not TrainingJob.objects.exists()


def test_create_reports_parse_and_rule_errors(staff_client, dataset, sent):
    response = staff_client.post(
        "/api/v1/training-jobs/",
        {
            "dataset": dataset.pk,
            "epochs": "abc",
            "learning_rate": -1,
            "image_size": 7,
            "batch_size": 0,
            "mode": "bogus",
        },
        content_type="application/json",
    )

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"epochs", "learning_rate", "image_size", "batch_size", "mode"}
    assert fields["image_size"] == ["image_size must be a whole number from 32 to 1024, not 7."]
    assert not TrainingJob.objects.exists()


def test_create_unknown_dataset_still_checks_settings(staff_client, db, sent):
    response = staff_client.post(
        "/api/v1/training-jobs/",
        {"dataset": 99, "epochs": 0, "backbone": "nope"},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"dataset", "epochs", "backbone"}


def test_create_rejects_unknown_mode(staff_client, dataset, sent):
    response = staff_client.post(
        "/api/v1/training-jobs/", {"dataset": dataset.pk, "mode": "distill"}, content_type="application/json"
    )

    assert response.status_code == 400
    assert "mode" in response.json()["error"]["fields"]


def test_create_rejects_unknown_dataset(staff_client, db, sent):
    response = staff_client.post("/api/v1/training-jobs/", {"dataset": 999}, content_type="application/json")

    assert response.status_code == 400
    assert "dataset" in response.json()["error"]["fields"]


def test_create_with_token_auth(dataset, staff_user, sent, anonymous_client):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=staff_user)
    response = anonymous_client.post(
        "/api/v1/training-jobs/",
        {"dataset": dataset.pk, "mode": "linear-probe"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )

    assert response.status_code == 201
    assert response.json()["config"]["mode"] == "linear-probe"


def test_detail_of_succeeded_job_has_metrics(anonymous_client, succeeded_job):
    response = anonymous_client.get(f"/api/v1/training-jobs/{succeeded_job.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["progress"] == 1
    assert body["epochs"][0]["val_macro_f1"] == 0.45
    assert body["test_metrics"]["accuracy"] == pytest.approx(8 / 9)
    assert body["test_metrics"]["per_class"]["altar"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": 0.8,
        "support": 3,
    }
    assert body["test_metrics"]["confusion_matrix"][0] == [2, 1, 0]
    assert body["val_metrics"]["macro_f1"] == 0.45
    assert "log_tail" not in body
    assert body["url"] == f"http://testserver/training/jobs/{succeeded_job.pk}/"
    assert body["downloads"]
    assert all(url.startswith("http://testserver/") for url in body["downloads"].values())
    # The tiny dataset's test photos are not AHE's.
    assert body["comparable_with_published"] is False


def test_detail_says_when_scores_compare_with_paper(anonymous_client, succeeded_job):
    from ml.reference import AHE_TEST_FINGERPRINT

    TrainingJob.objects.filter(pk=succeeded_job.pk).update(test_split_fingerprint=AHE_TEST_FINGERPRINT)

    body = anonymous_client.get(f"/api/v1/training-jobs/{succeeded_job.pk}/").json()

    assert body["test_split_fingerprint"] == AHE_TEST_FINGERPRINT
    assert body["comparable_with_published"] is True


def test_detail_hides_unfinished_jobs_from_public(anonymous_client, user_client, staff_client, make_job):
    job = make_job()

    hidden = anonymous_client.get(f"/api/v1/training-jobs/{job.pk}/")
    assert hidden.status_code == 404
    assert hidden.json() == {"error": {"code": "not_found", "message": f"Training job {job.pk} not found."}}
    assert user_client.get(f"/api/v1/training-jobs/{job.pk}/").status_code == 404
    staff_view = staff_client.get(f"/api/v1/training-jobs/{job.pk}/").json()
    assert staff_view["status"] == "queued"
    assert staff_view["queue_position"] == 0


def test_queue_position_null_once_finished(anonymous_client, succeeded_job):
    assert anonymous_client.get(f"/api/v1/training-jobs/{succeeded_job.pk}/").json()["queue_position"] is None


def test_list_shows_public_only_succeeded(anonymous_client, staff_client, succeeded_job, make_job):
    make_job()

    public = anonymous_client.get("/api/v1/training-jobs/").json()
    staff = staff_client.get("/api/v1/training-jobs/").json()

    assert [job["id"] for job in public] == [succeeded_job.pk]
    assert len(staff) == 2


def test_list_filters_by_status(staff_client, succeeded_job, make_job):
    queued = make_job()

    only_queued = staff_client.get("/api/v1/training-jobs/?status=queued").json()
    unknown = staff_client.get("/api/v1/training-jobs/?status=done")

    assert [job["id"] for job in only_queued] == [queued.pk]
    assert unknown.status_code == 400
    assert unknown.json()["error"] == {
        "code": "invalid_status",
        "message": "Unknown status 'done': use one of queued, running, succeeded, failed, cancelled.",
    }


def test_cancel_by_staff(staff_client, make_job):
    job = make_job()

    response = staff_client.post(f"/api/v1/training-jobs/{job.pk}/cancel/")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_cancel_finished_job_conflicts(staff_client, succeeded_job):
    response = staff_client.post(f"/api/v1/training-jobs/{succeeded_job.pk}/cancel/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_transition"


def test_promote_by_staff(staff_client, succeeded_job):
    response = staff_client.post(f"/api/v1/training-jobs/{succeeded_job.pk}/promote/")

    assert response.status_code == 200
    assert response.json()["promoted_at"]
    assert ModelVersion.objects.get(is_active=True).training_jobs.get() == succeeded_job


def test_models_api_metrics_share_one_shape(staff_client, succeeded_job):
    staff_client.post(f"/api/v1/training-jobs/{succeeded_job.pk}/promote/")

    versions = staff_client.get("/api/v1/models/").json()

    promoted, default = versions
    assert promoted["is_active"] is True
    assert set(promoted["metrics"]["val"]) == {"accuracy", "macro_f1"}
    assert promoted["metrics"]["test"]["macro_f1"] == succeeded_job.test_macro_f1
    # The tests' default model records no scores, so both are null rather than absent.
    assert default["is_default"] is True
    assert default["metrics"]["val"] is None
    assert default["metrics"]["test"] is None
    assert promoted["metrics"]["training_job"] == succeeded_job.pk


def test_promote_failed_job_conflicts(staff_client, make_job):
    job = make_job(Status.FAILED)

    response = staff_client.post(f"/api/v1/training-jobs/{job.pk}/promote/")

    assert response.status_code == 409
    assert "only a succeeded job" in response.json()["error"]["message"]


def test_datasets_hide_path_from_public(anonymous_client, staff_client, dataset):
    public = anonymous_client.get("/api/v1/datasets/").json()
    staff = staff_client.get("/api/v1/datasets/").json()

    assert public[0]["name"] == "tiny"
    assert public[0]["counts"]["test"]["vault"] == 3
    assert "path" not in public[0]
    assert staff[0]["path"] == dataset.path


def test_compare_has_reference_rows(anonymous_client, ahe_test_counts, succeeded_job):
    response = anonymous_client.get(f"/api/v1/training-jobs/compare/?ids={succeeded_job.pk}")

    assert response.status_code == 200
    body = response.json()
    assert [row["key"] for row in body["rows"]] == ["paper", "hrnet-w64", f"job-{succeeded_job.pk}"]
    altar = body["classes"].index("altar")
    vault = body["classes"].index("vault")
    assert body["rows"][0]["cells"][altar]["f1"] == 0.906
    assert body["rows"][1]["cells"][altar]["f1"] == 0.937
    job_row = body["rows"][2]
    assert job_row["comparable"] is True
    assert job_row["label"] == f"Job {succeeded_job.pk}: efficientnet_lite0, full fine-tune, 1 epoch"
    assert job_row["cells"][altar] == {"f1": 0.8, "beats_paper": False}
    assert job_row["cells"][vault] == {"f1": 1.0, "beats_paper": True}
    assert job_row["cells"][body["classes"].index("gargoyle")]["f1"] is None


def test_compare_other_test_set_never_beats_paper(anonymous_client, succeeded_job):
    body = anonymous_client.get(f"/api/v1/training-jobs/compare/?ids={succeeded_job.pk}").json()

    job_row = body["rows"][2]
    vault = body["classes"].index("vault")
    assert job_row["comparable"] is False
    assert job_row["label"].endswith("(other test set, 9 images)")
    assert job_row["cells"][vault] == {"f1": 1.0, "beats_paper": False}
    assert not any(cell["beats_paper"] for cell in job_row["cells"])
    assert all(row["comparable"] for row in body["rows"][:2])


def test_compare_rejects_unknown_job(anonymous_client, make_job):
    queued = make_job()

    response = anonymous_client.get(f"/api/v1/training-jobs/compare/?ids={queued.pk}")

    assert response.status_code == 400
    assert str(queued.pk) in response.json()["error"]["message"]


def test_schema_documents_training_endpoints(anonymous_client, db):
    response = anonymous_client.get("/api/v1/schema/")

    assert response.status_code == 200
    schema = response.content.decode()
    for path in (
        "/api/v1/datasets/",
        "/api/v1/training-jobs/",
        "/api/v1/training-jobs/{job_id}/",
        "/api/v1/training-jobs/{job_id}/cancel/",
        "/api/v1/training-jobs/{job_id}/promote/",
        "/api/v1/training-jobs/compare/",
    ):
        assert path in schema
