import csv
import io
import json
from pathlib import Path

import pytest

from classifier.models import ModelVersion
from training_jobs import services
from training_jobs.models import Dataset, TrainingJob

Status = TrainingJob.Status


def test_dashboard_lists_succeeded_jobs_publicly(anonymous_client, succeeded_job, make_job):
    hidden = make_job(Status.FAILED)

    page = anonymous_client.get("/training/").content.decode()

    assert f'data-job="{succeeded_job.pk}"' in page
    assert f'data-job="{hidden.pk}"' not in page
    assert "Paper: ResNet" in page


def test_dashboard_shows_checked_uploads(anonymous_client, admin_user):
    from classifier import services as classifier_services
    from classifier.models import Prediction
    from conftest import make_image_bytes

    empty = anonymous_client.get("/training/").content.decode()
    active = classifier_services.model_version_ensure_default()
    for index, checked in enumerate(["altar", "apse"]):
        upload = classifier_services.upload_create(name=f"{index}.png", data=make_image_bytes("PNG", (40 + index, 30)))
        Prediction.objects.filter(pk=upload.latest_prediction_id).update(
            status=Prediction.Status.DONE, label="altar", model_version=active
        )
        classifier_services.upload_set_verified_label(upload, label=checked, user=admin_user)

    page = anonymous_client.get("/training/").content.decode()

    assert 'id="checked-table"' not in empty
    assert 'id="checked-table"' in page
    assert f'{active.version} <span class="badge">active</span></td><td>2</td><td>1</td><td>0.500</td>' in page
    assert "The active model on 2 checked photos, per class" in page
    assert 'id="checked-class-table"' in page


def test_dashboard_notes_unscored_checked_photos(anonymous_client, admin_user):
    from classifier import services as classifier_services
    from classifier.models import Prediction
    from conftest import make_image_bytes

    classifier_services.model_version_ensure_default()
    upload = classifier_services.upload_create(name="a.png", data=make_image_bytes("PNG", (40, 30)))
    Prediction.objects.filter(pk=upload.latest_prediction_id).update(status=Prediction.Status.DONE, label="altar")
    classifier_services.upload_set_verified_label(upload, label="altar", user=admin_user)

    page = anonymous_client.get("/training/").content.decode()

    assert 'id="checked-table"' in page
    assert 'id="checked-not-scored"' in page
    assert 'id="checked-class-table"' not in page


def test_checked_uploads_report_scores_active_model(admin_user):
    from classifier import services as classifier_services
    from classifier.models import Prediction
    from conftest import make_image_bytes
    from training_jobs import presenters

    assert presenters.checked_uploads_report() is None
    active = classifier_services.model_version_ensure_default()
    for index, (predicted, checked) in enumerate([("altar", "altar"), ("altar", "apse"), ("apse", "apse")]):
        upload = classifier_services.upload_create(name=f"{index}.png", data=make_image_bytes("PNG", (40 + index, 30)))
        Prediction.objects.filter(pk=upload.latest_prediction_id).update(
            status=Prediction.Status.DONE, label=predicted, model_version=active
        )
        classifier_services.upload_set_verified_label(upload, label=checked, user=admin_user)

    report = presenters.checked_uploads_report()

    altar = report["class_names"].index("altar")
    apse = report["class_names"].index("apse")
    assert report["n"] == 3
    assert report["class_names"] == ["altar", "apse"]
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["per_class"]["altar"]["precision"] == pytest.approx(0.5)
    assert report["per_class"]["apse"]["recall"] == pytest.approx(0.5)
    assert report["per_class"]["apse"]["support"] == 2
    assert report["confusion_matrix"][apse][altar] == 1


def test_job_page_shows_results(anonymous_client, ahe_test_counts, succeeded_job):
    response = anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/")

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="test-class-table"' in page
    assert 'id="val-class-table"' in page
    assert "0.906" in page  # altar F1 of Llamas et al. (2017) beside the job's
    assert f"/training/jobs/{succeeded_job.pk}/samples/?true=altar&amp;pred=apse" in page
    assert "chart.js-4.5.1/chart.umd.min.js" in page
    assert 'id="promote-link"' not in page


def test_job_page_shows_elapsed_time_without_javascript(anonymous_client, succeeded_job):
    from datetime import timedelta

    TrainingJob.objects.filter(pk=succeeded_job.pk).update(
        finished_at=succeeded_job.started_at + timedelta(minutes=3, seconds=20)
    )

    page = anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/").content.decode()

    assert '<span id="elapsed">3 min 20 s</span>' in page


@pytest.mark.parametrize(("seconds", "text"), [(None, "–"), (45.4, "45 s"), (200, "3 min 20 s"), (3900, "1 h 5 min")])
def test_duration_filter(seconds, text):
    from training_jobs.templatetags.training_format import duration

    assert duration(seconds) == text


def test_job_page_of_queued_job_is_staff_only(anonymous_client, user_client, staff_client, make_job):
    make_job(Status.RUNNING)
    job = make_job()

    assert anonymous_client.get(f"/training/jobs/{job.pk}/").status_code == 404
    assert user_client.get(f"/training/jobs/{job.pk}/").status_code == 404
    page = staff_client.get(f"/training/jobs/{job.pk}/").content.decode()
    assert "Waiting for a training worker; 1 job ahead of it." in page
    assert 'id="cancel-form"' in page


def test_progress_json_reports_running_job(staff_client, make_job):
    job = make_job(Status.RUNNING)
    services.training_job_record_progress(claim=job.claim, epoch=1, batch=2, batches=8, loss=2.0)

    body = staff_client.get(f"/training/jobs/{job.pk}/progress.json").json()

    assert body["status"] == "running"
    assert body["phase"] == "training"
    assert body["epoch_progress"] == 0.25
    assert body["last_loss"] == 2.0
    assert body["elapsed_seconds"] >= 0
    assert body["remaining_seconds"] is not None


def test_progress_json_marks_lost_job_failed(staff_client, make_job, settings):
    settings.TRAINING_JOB_STALE_AFTER = 60
    job = make_job(Status.RUNNING)
    TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=job.heartbeat_at.replace(year=2000))

    body = staff_client.get(f"/training/jobs/{job.pk}/progress.json").json()

    assert body["status"] == "failed"
    assert "heartbeat" in body["failure_reason"]


def test_samples_page_lists_cell_images(anonymous_client, succeeded_job, dataset_folder):
    response = anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/samples/?true=altar&pred=apse")

    page = response.content.decode()
    assert response.status_code == 200
    assert "1 test image" in page
    assert "test/altar/altar_2.jpg" in page
    sample = succeeded_job.samples.get(path="test/altar/altar_2.jpg")
    image = anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/samples/{sample.pk}/image")
    assert image.status_code == 200
    assert b"".join(image.streaming_content) == (dataset_folder / "test" / "altar" / "altar_2.jpg").read_bytes()


def test_samples_rejects_unknown_class(anonymous_client, succeeded_job):
    response = anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/samples/?true=altar&pred=tower")

    assert response.status_code == 404


def test_sample_image_stays_inside_dataset(anonymous_client, succeeded_job):
    sample = succeeded_job.samples.first()
    sample.path = "../../../../etc/passwd"
    sample.save()

    response = anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/samples/{sample.pk}/image")

    assert response.status_code == 404


def test_sample_image_follows_symlink_inside_dataset(anonymous_client, succeeded_job, dataset_folder, tmp_path):
    elsewhere = tmp_path / "elsewhere.jpg"
    elsewhere.write_bytes((dataset_folder / "test" / "altar" / "altar_2.jpg").read_bytes() + b"linked")
    (dataset_folder / "test" / "altar" / "linked.jpg").symlink_to(elsewhere)
    sample = succeeded_job.samples.first()
    sample.path = "test/altar/linked.jpg"
    sample.save()

    response = anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/samples/{sample.pk}/image")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == elsewhere.read_bytes()


def test_metrics_csv_has_both_splits(anonymous_client, succeeded_job):
    response = anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/metrics.csv")

    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    test_altar = next(row for row in rows if row["split"] == "test" and row["class"] == "altar")
    assert float(test_altar["f1"]) == 0.8
    assert test_altar["support"] == "3"
    assert {row["split"] for row in rows} == {"test", "val"}


def test_metrics_json_matches_api(anonymous_client, succeeded_job):
    download = json.loads(anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/metrics.json").content)
    api = anonymous_client.get(f"/api/v1/training-jobs/{succeeded_job.pk}/").json()

    assert download["test_metrics"]["per_class"] == api["test_metrics"]["per_class"]
    assert download["epochs"] == api["epochs"]


def test_model_download(anonymous_client, succeeded_job):
    weights = anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/model/model.safetensors")
    description = anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/model/model.json")
    other = anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/model/settings.py")

    assert weights.status_code == 200
    assert len(b"".join(weights.streaming_content)) > 1000
    assert json.loads(description.content)["class_names"] == ["altar", "apse", "vault"]
    assert other.status_code == 404


def test_model_json_paths_for_staff_only(anonymous_client, staff_client, succeeded_job):
    description_file = Path(succeeded_job.model_dir) / "model.json"
    description = json.loads(description_file.read_text())
    description["config"] = {"data_dir": "/srv/data/ahe", "out_dir": "/srv/var/job-1", "weights_file": None}
    description["teacher"] = {"path": "/srv/models/teacher", "model_version": "teacher-1"}
    description_file.write_text(json.dumps(description))
    url = f"/training/jobs/{succeeded_job.pk}/model/model.json"

    public = anonymous_client.get(url)
    staff = json.loads(b"".join(staff_client.get(url).streaming_content))

    assert public["Content-Disposition"] == f'attachment; filename="training-job-{succeeded_job.pk}-model.json"'
    assert "/srv/" not in public.content.decode()
    assert json.loads(public.content)["config"] == {"data_dir": "ahe", "out_dir": "job-1", "weights_file": None}
    assert json.loads(public.content)["teacher"]["path"] == "teacher"
    assert staff["config"]["data_dir"] == "/srv/data/ahe"


def test_cancelled_checkpoint_download_staff_only(anonymous_client, staff_client, make_job, tmp_path):
    from ml.testing import make_tiny_checkpoint

    job = make_job(Status.RUNNING)
    model_dir = make_tiny_checkpoint(tmp_path / "best", class_names=["altar", "apse", "vault"])
    services.training_job_mark_cancelled(claim=job.claim, model_dir=model_dir, best_epoch=1)
    url = f"/training/jobs/{job.pk}/model/model.safetensors"

    assert anonymous_client.get(url).status_code == 404
    assert staff_client.get(url).status_code == 200


def test_cancelled_checkpoint_download_with_token(anonymous_client, staff_user, registered_user, make_job, tmp_path):
    from ml.testing import make_tiny_checkpoint
    from rest_framework.authtoken.models import Token

    job = make_job(Status.RUNNING)
    model_dir = make_tiny_checkpoint(tmp_path / "best", class_names=["altar", "apse", "vault"])
    services.training_job_mark_cancelled(claim=job.claim, model_dir=model_dir, best_epoch=1)
    url = f"/training/jobs/{job.pk}/model/model.json"
    staff_token = Token.objects.create(user=staff_user).key
    visitor_token = Token.objects.create(user=registered_user).key

    assert anonymous_client.get(url, HTTP_AUTHORIZATION=f"Token {staff_token}").status_code == 200
    assert anonymous_client.get(url, HTTP_AUTHORIZATION=f"Token {visitor_token}").status_code == 404
    assert anonymous_client.get(url, HTTP_AUTHORIZATION="Token not-a-token").status_code == 404


def test_cancelled_job_page_offers_checkpoint(staff_client, make_job, tmp_path):
    from ml.testing import make_tiny_checkpoint

    job = make_job(Status.RUNNING)
    model_dir = make_tiny_checkpoint(tmp_path / "best", class_names=["altar", "apse", "vault"])
    services.training_job_mark_cancelled(claim=job.claim, model_dir=model_dir, best_epoch=1)

    page = staff_client.get(f"/training/jobs/{job.pk}/").content.decode()

    assert "The best checkpoint so far, from epoch 1," in page
    assert f"/training/jobs/{job.pk}/model/model.safetensors" in page
    assert 'id="promote-link"' not in page
    assert "Compare with the published results" not in page


def test_compare_page_marks_cells_beating_paper(anonymous_client, ahe_test_counts, succeeded_job):
    page = anonymous_client.get(f"/training/compare/?ids={succeeded_job.pk}").content.decode()

    assert "Best public fine-tune: HRNet-W64" in page
    assert '<td class="beats-paper">1.000</td>' in page
    assert 'id="compare-chart"' in page
    assert "not-comparable" not in page


def test_compare_page_other_test_set_unmarked(anonymous_client, succeeded_job):
    page = anonymous_client.get(f"/training/compare/?ids={succeeded_job.pk}").content.decode()

    assert '<td class="beats-paper">' not in page
    assert 'class="job not-comparable"' in page
    assert "(other test set, 9 images)" in page


def test_job_page_compares_only_ahe_test_set(anonymous_client, make_job, ahe_test_counts):
    job = make_job(TrainingJob.Status.SUCCEEDED)
    comparable = anonymous_client.get(f"/training/jobs/{job.pk}/").content.decode()
    ahe_test_counts.counts = {**ahe_test_counts.counts, "test": {"altar": 3, "apse": 3, "vault": 3}}
    ahe_test_counts.save()
    other = anonymous_client.get(f"/training/jobs/{job.pk}/").content.decode()

    assert "Paper F1 (Llamas et al. 2017)</th>" in comparable
    assert 'id="not-comparable"' not in comparable
    assert "Paper F1 (Llamas et al. 2017)</th>" not in other
    assert 'id="not-comparable"' in other


def test_comparability_follows_the_scored_photos(anonymous_client, make_job, ahe_test_counts):
    from ml.reference import AHE_TEST_FINGERPRINT

    same_counts_other_photos = make_job(TrainingJob.Status.SUCCEEDED)
    TrainingJob.objects.filter(pk=same_counts_other_photos.pk).update(test_split_fingerprint="0123456789abcdef")
    ahe_photos = make_job(TrainingJob.Status.SUCCEEDED)
    TrainingJob.objects.filter(pk=ahe_photos.pk).update(test_split_fingerprint=AHE_TEST_FINGERPRINT)

    other = anonymous_client.get(f"/training/jobs/{same_counts_other_photos.pk}/").content.decode()
    # A dataset rescanned since keeps the job's recorded fingerprint decisive.
    ahe_test_counts.counts = {**ahe_test_counts.counts, "test": {"altar": 3, "apse": 3, "vault": 3}}
    ahe_test_counts.save()
    ahe = anonymous_client.get(f"/training/jobs/{ahe_photos.pk}/").content.decode()

    assert 'id="not-comparable"' in other
    assert 'id="not-comparable"' not in ahe
    assert "Paper F1 (Llamas et al. 2017)</th>" in ahe


def test_compare_page_sets_settings_side_by_side(anonymous_client, make_job):
    plain = make_job(TrainingJob.Status.SUCCEEDED, seed=1)
    averaged = make_job(TrainingJob.Status.SUCCEEDED, seed=2, split_seed=1, ema_decay=0.998)

    page = anonymous_client.get(f"/training/compare/?ids={plain.pk},{averaged.pk}").content.decode()

    table = page[page.index('id="settings-table"') :]
    assert '<th scope="col">EMA decay</th>' in table
    differs = ' <span aria-label="differs">≠</span></td>'
    assert f'<td class="differs">1{differs}<td>1</td><td class="differs">off{differs}' in table
    assert f'<td class="differs">2{differs}<td>1</td><td class="differs">0.998{differs}' in table
    assert "<td>tiny</td><td>efficientnet_lite0</td><td>Full fine-tune</td>" in table
    assert "<td>0.450</td>" in table


def test_compare_json_feeds_chart(anonymous_client, succeeded_job):
    body = anonymous_client.get(f"/training/compare.json?ids={succeeded_job.pk}").json()

    assert len(body["rows"]) == 3
    malformed = anonymous_client.get("/training/compare.json?ids=1,abc")
    assert malformed.status_code == 400
    assert "'abc' is not a job number." in malformed.content.decode()


@pytest.mark.parametrize("action", ["cancel", "promote"])
@pytest.mark.parametrize("persona", ["anonymous_client", "user_client"])
def test_html_actions_need_staff(request, persona, action, succeeded_job, make_job):
    client = request.getfixturevalue(persona)
    running = make_job(Status.RUNNING)

    for job in (running, succeeded_job):
        response = client.post(f"/training/jobs/{job.pk}/{action}/")
        if persona == "anonymous_client":
            assert response.status_code == 302
            assert "/login/" in response["Location"]
        else:
            assert response.status_code == 403
            assert "Only staff users may do this." in response.content.decode()

    running.refresh_from_db()
    assert not running.cancel_requested
    assert not ModelVersion.objects.filter(training_jobs=succeeded_job).exists()


def test_html_cancel_and_promote_by_staff(staff_client, succeeded_job, make_job):
    running = make_job(Status.RUNNING)

    staff_client.post(f"/training/jobs/{running.pk}/cancel/")
    staff_client.post(f"/training/jobs/{succeeded_job.pk}/promote/")
    refused = staff_client.post(f"/training/jobs/{succeeded_job.pk}/cancel/", follow=True)

    page = staff_client.get(f"/training/jobs/{running.pk}/").content.decode()

    running.refresh_from_db()
    assert running.cancel_requested
    assert ModelVersion.objects.get(is_active=True).training_jobs.get() == succeeded_job
    assert "only queued or running jobs can be cancelled" in refused.content.decode()
    assert "Stopping at the next batch." in page
    assert 'id="cancel-form"' not in page


def test_admin_refuses_to_delete_job_of_serving_model(staff_client, succeeded_job):
    staff_client.post(f"/training/jobs/{succeeded_job.pk}/promote/")
    url = f"/admin/training_jobs/trainingjob/{succeeded_job.pk}/delete/"

    confirm = staff_client.get(url).content.decode()
    staff_client.post(url, {"post": "yes"})
    staff_client.post(
        "/admin/training_jobs/trainingjob/",
        {"action": "delete_selected", "_selected_action": [succeeded_job.pk], "post": "yes"},
    )

    assert f"Training job {succeeded_job.pk}: its model" in confirm
    assert "serves predictions. Activate another model first." in confirm
    assert TrainingJob.objects.filter(pk=succeeded_job.pk).exists()


def test_admin_deletes_job_that_serves_nothing(staff_client, succeeded_job):
    url = f"/admin/training_jobs/trainingjob/{succeeded_job.pk}/delete/"

    confirm = staff_client.get(url).content.decode()
    staff_client.post(url, {"post": "yes"})

    assert f"job {succeeded_job.pk}, epoch 1" in confirm
    assert "test scores of altar" in confirm
    assert not TrainingJob.objects.filter(pk=succeeded_job.pk).exists()
    assert not Path(succeeded_job.model_dir).exists()


def test_admin_delete_keeps_folder_of_a_registered_model(staff_client, succeeded_job, make_job):
    staff_client.post(f"/training/jobs/{succeeded_job.pk}/promote/")
    newer = make_job(Status.SUCCEEDED)
    staff_client.post(f"/training/jobs/{newer.pk}/promote/")
    url = f"/admin/training_jobs/trainingjob/{succeeded_job.pk}/delete/"

    page = staff_client.post(url, {"post": "yes"}, follow=True).content.decode()

    assert not TrainingJob.objects.filter(pk=succeeded_job.pk).exists()
    assert Path(succeeded_job.model_dir).is_dir()
    assert "stays, because model version" in page


# Admin


def test_admin_launches_job_after_commit(staff_client, dataset, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(services, "training_job_enqueue", sent.append)
    form = staff_client.get("/admin/training_jobs/trainingjob/add/").content.decode()
    assert 'value="efficientnet_lite2" selected' in form
    assert "<h1>New training job</h1>" in form

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/training_jobs/trainingjob/add/",
            {
                "dataset": dataset.pk,
                "backbone": "efficientnet_lite0",
                "mode": "linear-probe",
                "epochs": 2,
                "batch_size": 8,
                "learning_rate": 0.01,
                "image_size": 64,
                "seed": 3,
            },
        )

    job = TrainingJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/training/jobs/{job.pk}/"
    assert (job.backbone, job.mode, job.epochs, job.created_by.username) == (
        "efficientnet_lite0",
        "linear-probe",
        2,
        "staff",
    )
    assert sent == [job.pk]


def test_admin_form_shows_every_invalid_field(staff_client, dataset, monkeypatch):
    monkeypatch.setattr(services, "training_job_enqueue", lambda job_id: pytest.fail("nothing may be sent"))

    response = staff_client.post(
        "/admin/training_jobs/trainingjob/add/",
        {
            "dataset": dataset.pk,
            "backbone": "efficientnet_lite0",
            "mode": "finetune",
            "epochs": 0,
            "batch_size": 8,
            "learning_rate": -1,
            "image_size": 7,
            "seed": 0,
        },
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"epochs", "learning_rate", "image_size"}
    assert not TrainingJob.objects.exists()


def test_admin_form_takes_optional_settings(staff_client, dataset, monkeypatch):
    monkeypatch.setattr(services, "training_job_enqueue", lambda job_id: None)
    form = staff_client.get("/admin/training_jobs/trainingjob/add/").content.decode()
    assert 'name="ema_decay"' in form
    assert 'name="split_seed"' in form
    assert 'name="patience"' in form
    settings = {
        "dataset": dataset.pk,
        "backbone": "efficientnet_lite0",
        "mode": "finetune",
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 0.001,
        "image_size": 64,
        "seed": 3,
    }

    rejected = staff_client.post(
        "/admin/training_jobs/trainingjob/add/",
        settings | {"ema_decay": "1", "patience": "0", "split_seed": "-2", "epochs": "-1"},
    )
    staff_client.post("/admin/training_jobs/trainingjob/add/", settings | {"ema_decay": "0.998", "split_seed": "1"})

    errors = rejected.context["adminform"].form.errors
    assert set(errors) == {"ema_decay", "patience", "split_seed", "epochs"}
    assert errors["epochs"] == ["epochs must be a whole number from 1 to 1000, not -1."]
    assert errors["split_seed"] == [f"split_seed must be a whole number from 0 to {2**31 - 1}, not -2."]
    job = TrainingJob.objects.get()
    assert (job.seed, job.split_seed, job.ema_decay, job.patience) == (3, 1, 0.998, None)


def test_job_page_shows_optional_settings(staff_client, make_job):
    off = staff_client.get(f"/training/jobs/{make_job(seed=4).pk}/").content.decode()
    on = staff_client.get(f"/training/jobs/{make_job(split_seed=1, ema_decay=0.998, patience=3).pk}/").content.decode()

    assert "<td>4 (the seed)</td>" in off
    assert "<th>EMA decay (moving average of the weights)</th><td>off</td>" in off
    assert "<th>Early stopping</th><td>off</td>" in off
    assert "<th>Validation split seed</th><td>1</td>" in on
    assert "<td>0.998 per batch</td>" in on
    assert "after 3 epochs without improvement" in on


def test_admin_form_reports_parse_and_rule_errors(staff_client, dataset, monkeypatch):
    monkeypatch.setattr(services, "training_job_enqueue", lambda job_id: pytest.fail("nothing may be sent"))

    response = staff_client.post(
        "/admin/training_jobs/trainingjob/add/",
        {
            "dataset": dataset.pk,
            "backbone": "__other__",
            "other_backbone": "",
            "mode": "finetune",
            "epochs": "abc",
            "batch_size": 0,
            "learning_rate": "",
            "image_size": 7,
            "seed": -5,
        },
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"other_backbone", "epochs", "batch_size", "learning_rate", "image_size", "seed"}
    assert errors["other_backbone"] == ["Name the timm architecture to train."]
    assert "whole number" in errors["epochs"][0]
    assert not TrainingJob.objects.exists()


def _other_backbone_form(dataset, backbone: str, **extra) -> dict:
    """Return the launch form's fields for a small job with an "Other timm model" backbone."""
    return {
        "dataset": dataset.pk,
        "backbone": "__other__",
        "other_backbone": backbone,
        "mode": "finetune",
        "epochs": 1,
        "batch_size": 8,
        "learning_rate": 0.01,
        "image_size": 64,
        "seed": 0,
        **extra,
    }


def test_admin_form_names_invalid_field(staff_client, dataset, monkeypatch):
    monkeypatch.setattr(services, "training_job_enqueue", lambda job_id: pytest.fail("nothing may be sent"))

    response = staff_client.post("/admin/training_jobs/trainingjob/add/", _other_backbone_form(dataset, "resnet50"))

    assert response.status_code == 200
    assert "has no installed pretrained weights" in response.content.decode()
    assert not TrainingJob.objects.exists()


def test_admin_form_rejects_unknown_architecture(staff_client, dataset, monkeypatch, tmp_path):
    monkeypatch.setattr(services, "training_job_enqueue", lambda job_id: pytest.fail("nothing may be sent"))
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes((2).to_bytes(8, "little") + b"{}")

    response = staff_client.post(
        "/admin/training_jobs/trainingjob/add/", _other_backbone_form(dataset, "resnet5", weights_file=str(weights))
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["other_backbone"]
    assert "backbone 'resnet5' is not a timm" in errors["other_backbone"][0]
    assert "did you mean resnet50" in errors["other_backbone"][0]
    assert not TrainingJob.objects.exists()


def test_admin_add_refused_for_non_staff(user_client, dataset):
    response = user_client.post("/admin/training_jobs/trainingjob/add/", {"dataset": dataset.pk})

    assert response.status_code == 302
    assert not TrainingJob.objects.exists()


def test_admin_cancel_action(staff_client, make_job, succeeded_job):
    queued = make_job()

    staff_client.post(
        "/admin/training_jobs/trainingjob/",
        {"action": "cancel_jobs", "_selected_action": [queued.pk, succeeded_job.pk]},
    )

    queued.refresh_from_db()
    succeeded_job.refresh_from_db()
    assert queued.status == Status.CANCELLED
    assert succeeded_job.status == Status.SUCCEEDED


def test_admin_registers_dataset(staff_client, db, tmp_path):
    from training_jobs.tests.conftest import make_dataset_folder

    folder = make_dataset_folder(tmp_path / "ahe-mini")

    response = staff_client.post("/admin/training_jobs/dataset/add/", {"name": "", "path": str(folder)})

    assert response.status_code == 302
    dataset = Dataset.objects.get()
    assert dataset.name == "ahe-mini"
    assert dataset.train_images == 9


def test_admin_dataset_list_shortens_path(staff_client, db, tmp_path):
    from training_jobs.tests.conftest import make_dataset_folder

    folder = make_dataset_folder(tmp_path / "archive" / "photos" / "ahe-mini")
    staff_client.post("/admin/training_jobs/dataset/add/", {"name": "", "path": str(folder)})

    page = staff_client.get("/admin/training_jobs/dataset/").content.decode()

    assert f'<span title="{folder}">…/photos/ahe-mini</span>' in page
    assert f">{folder}<" not in page


def test_admin_rejects_bad_dataset_folder(staff_client, db, tmp_path):
    response = staff_client.post("/admin/training_jobs/dataset/add/", {"name": "x", "path": str(tmp_path / "nope")})

    assert response.status_code == 200
    assert "not found" in response.content.decode()
    assert not Dataset.objects.exists()


def test_admin_dataset_warns_and_rejects_paths(staff_client, db, tmp_path):
    from training_jobs.tests.conftest import make_dataset_folder

    folder = make_dataset_folder(tmp_path / "gappy")
    (folder / "train" / "altar" / "broken.jpg").write_bytes(b"not an image")
    for image in (folder / "test" / "vault").iterdir():
        image.unlink()
    (tmp_path / "file.txt").write_text("x")

    added = staff_client.post("/admin/training_jobs/dataset/add/", {"name": "", "path": str(folder)}, follow=True)
    relative = staff_client.post("/admin/training_jobs/dataset/add/", {"name": "r", "path": "relative/path"})
    a_file = staff_client.post("/admin/training_jobs/dataset/add/", {"name": "f", "path": str(tmp_path / "file.txt")})
    detail = staff_client.get(f"/admin/training_jobs/dataset/{Dataset.objects.get().pk}/change/").content.decode()

    page = added.content.decode()
    assert "Classes without images (test: vault). Training jobs cannot use this dataset" in page
    assert "1 unreadable image file: train/altar/broken.jpg." in page
    assert "Give an absolute path, starting with /" in relative.content.decode()
    assert f"{tmp_path / 'file.txt'} is a file, not a folder" in a_file.content.decode()
    assert "<th scope='row'>vault</th><td>3</td><td>0</td>" in detail.replace('"', "'")
    assert Dataset.objects.count() == 1


def test_promote_asks_first_with_active_model_beside(staff_client, anonymous_client, succeeded_job):
    from classifier import services as classifier_services

    default = classifier_services.model_version_ensure_default()
    job_page = staff_client.get(f"/training/jobs/{succeeded_job.pk}/").content.decode()
    confirm = staff_client.get(f"/training/jobs/{succeeded_job.pk}/promote/").content.decode()

    assert f'href="/training/jobs/{succeeded_job.pk}/promote/"' in job_page
    assert 'id="promote-comparison"' in confirm
    assert f"Active now: {default.version}" in confirm
    assert "0.889" in confirm  # the job's test accuracy, 8 / 9
    assert ModelVersion.objects.get(is_active=True) == default
    assert "/login/" in anonymous_client.get(f"/training/jobs/{succeeded_job.pk}/promote/")["Location"]

    staff_client.post(f"/training/jobs/{succeeded_job.pk}/promote/")
    promoted_page = staff_client.get(f"/training/jobs/{succeeded_job.pk}/").content.decode()

    assert ModelVersion.objects.get(is_active=True).training_jobs.get() == succeeded_job
    assert "(active)" in promoted_page
    assert 'id="promote-link"' not in promoted_page


def test_cancelled_job_without_checkpoint_says_why(staff_client, make_job):
    job = make_job(Status.CANCELLED)
    TrainingJob.objects.filter(pk=job.pk).update(model_dir="", best_epoch=None)

    page = staff_client.get(f"/training/jobs/{job.pk}/").content.decode()

    assert "It stopped before its first validation pass, so no checkpoint was kept." in page


def test_promote_page_compares_test_scores_on_same_photos(staff_client, succeeded_job):
    from classifier import services as classifier_services

    default = classifier_services.model_version_ensure_default()
    ModelVersion.objects.filter(pk=default.pk).update(
        metrics={"test": {"accuracy": 0.9715, "macro_f1": 0.9674, "split_fingerprint": "feedfacefeedface"}}
    )
    TrainingJob.objects.filter(pk=succeeded_job.pk).update(test_split_fingerprint="feedfacefeedface")

    same = staff_client.get(f"/training/jobs/{succeeded_job.pk}/promote/").content.decode()
    TrainingJob.objects.filter(pk=succeeded_job.pk).update(test_split_fingerprint="0000000000000000")
    other = staff_client.get(f"/training/jobs/{succeeded_job.pk}/promote/").content.decode()

    assert "<td>0.967</td>" in same
    assert "(model.json)" in same
    assert 'id="same-test-photos"' in same
    assert 'id="other-test-photos"' in other


def test_dashboard_shows_served_model_results(anonymous_client, succeeded_job, settings, tmp_path):
    import shutil

    from ml.checkpoints import read_description, write_description
    from ml.reference import AHE_TEST_FINGERPRINT

    model_dir = tmp_path / "default"
    shutil.copytree(settings.DEFAULT_MODEL_DIR, model_dir)
    settings.DEFAULT_MODEL_DIR = str(model_dir)
    description = read_description(model_dir)
    per_class = {"altar": {"precision": 1.0, "recall": 0.95, "f1": 0.974, "support": 20}}
    description["metrics"] = {
        "test": {
            "accuracy": 0.95, "macro_f1": 0.974, "n": 20, "per_class": per_class,
            "confusion_matrix": [[19]], "class_names": ["altar"], "split_fingerprint": AHE_TEST_FINGERPRINT,
        }
    }  # fmt: skip
    write_description(model_dir, description)
    default_version = description["model_version"]

    page = anonymous_client.get("/training/").content.decode()

    assert f'The model serving predictions: <span class="mono">{default_version}</span>' in page
    assert 'id="served-class-table"' in page
    assert '<td class="f1 beats-paper">0.974</td>' in page  # above the paper's altar F1, 0.906
    assert "AHE's official test split" in page

    services.training_job_promote(job=succeeded_job)
    promoted = anonymous_client.get("/training/").content.decode()

    assert f'href="/training/jobs/{succeeded_job.pk}/">job {succeeded_job.pk}</a>' in promoted
    assert 'id="served-class-table"' not in promoted
