import pytest
import torch

from ml.checkpoints import load_checkpoint, read_description
from ml.config import TrainConfig
from ml.errors import ConfigError, TrainingError
from ml.evaluation import evaluate
from ml.testing import tiny_train_config
from ml.training import CutMix, WeightAverage, build_optimizer, distillation_loss, fit, train_one_epoch


def test_fit_lowers_training_loss_and_saves_best(tiny_dataset, tmp_path):
    events = []

    result = fit(tiny_train_config(tiny_dataset, tmp_path / "run"), on_progress=events.append)

    losses = [epoch["train_loss"] for epoch in result.history]
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    assert result.model_dir == tmp_path / "run"
    description = read_description(result.model_dir)
    assert description["best_epoch"] == result.best_epoch
    assert description["dataset_fingerprint"]
    assert description["config"]["epochs"] == 3
    assert [e["epoch"] for e in events if e["phase"] == "epoch_end"] == [1, 2, 3]
    assert {"train_loss", "val_accuracy", "val_macro_f1", "lr", "seconds"} <= set(events[-1]["metrics"])


def test_fit_is_reproducible_with_a_seed(tiny_dataset, tmp_path):
    first = fit(tiny_train_config(tiny_dataset, tmp_path / "a", epochs=1))
    second = fit(tiny_train_config(tiny_dataset, tmp_path / "b", epochs=1))

    assert first.history[0]["train_loss"] == pytest.approx(second.history[0]["train_loss"], rel=1e-5)


def test_fit_stops_between_batches_when_asked(tiny_dataset, tmp_path):
    batches = []

    # 40 training images in batches of 12 (the last dropped) give 3 batches per epoch.
    def stop_in_second_epoch():
        return len(batches) >= 4

    result = fit(
        tiny_train_config(tiny_dataset, tmp_path / "run"),
        on_progress=lambda event: batches.append(event) if event["phase"] == "train" else None,
        should_stop=stop_in_second_epoch,
    )

    assert result.cancelled
    assert result.best_epoch == 1
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_fit_cancelled_before_first_epoch_saves_nothing(tiny_dataset, tmp_path):
    result = fit(tiny_train_config(tiny_dataset, tmp_path / "run"), should_stop=lambda: True)

    assert result.cancelled
    assert result.model_dir is None
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_linear_probe_trains_only_the_head(tiny_dataset, tmp_path):
    from ml.models import create_model

    pretrained = create_model("efficientnet_lite0", 10).state_dict()

    result = fit(tiny_train_config(tiny_dataset, tmp_path / "run", mode="linear-probe", epochs=1))

    from ml.checkpoints import load_checkpoint

    trained, _ = load_checkpoint(result.model_dir)
    state = trained.state_dict()
    assert torch.equal(state["conv_stem.weight"], pretrained["conv_stem.weight"])
    assert torch.equal(state["bn2.running_mean"], pretrained["bn2.running_mean"])
    assert not torch.equal(state["classifier.weight"], pretrained["classifier.weight"])


def test_evaluate_returns_metrics_and_samples(tiny_dataset, tmp_path):
    result = fit(tiny_train_config(tiny_dataset, tmp_path / "run", epochs=1))

    metrics = evaluate(result.model_dir, tiny_dataset, split="test", device="cpu")

    assert metrics["n"] == 60
    assert len(metrics["samples"]) == 60
    assert set(metrics["per_class"]["altar"]) == {"precision", "recall", "f1", "support"}
    assert sum(map(sum, metrics["confusion_matrix"])) == 60
    assert metrics["samples"][0]["path"].startswith("test/altar/")
    assert len(metrics["split_fingerprint"]) == 16
    first = metrics["samples"][0]["path"]
    fewer = evaluate(result.model_dir, tiny_dataset, split="test", device="cpu", exclude={first})
    assert fewer["split_fingerprint"] != metrics["split_fingerprint"]


def test_evaluate_warns_about_class_without_images(tiny_model, tiny_dataset, caplog):
    altar = {f"test/altar/{path.name}" for path in (tiny_dataset / "test" / "altar").iterdir()}

    with caplog.at_level("WARNING", logger="ml.evaluation"):
        metrics = evaluate(tiny_model, tiny_dataset, split="test", device="cpu", exclude=altar)

    assert metrics["per_class"]["altar"]["support"] == 0
    assert "no readable test images of altar: their F1 of 0 counts in macro-F1" in caplog.text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mode", "partial", "mode must be one of"),
        ("epochs", 0, "epochs must be at least 1"),
        ("image_size", 16, "image_size must be between 32 and 1024 pixels, got 16"),
        ("learning_rate", 2.0, "learning_rate must be between"),
        ("device", "tpu", "device must be auto, cpu or cuda"),
        ("ema_decay", 1.0, "ema_decay must be between 0 and 1"),
        ("weights_file", "/nonexistent/w.pth", "weights_file not found"),
        ("teacher", "/nonexistent/run", "teacher must be a model folder with model.json"),
        ("distill_weight", 1.5, "distill_weight must be between 0 and 1"),
        ("distill_temperature", 0.0, "distill_temperature must be above 0 and at most 100, got 0.0"),
        ("distill_temperature", float("inf"), "distill_temperature must be above 0 and at most 100, got inf"),
        ("distill_weight", 0.9, "distill_weight and distill_temperature apply only with a teacher"),
        ("cutmix_prob", 1.5, "cutmix_prob must be between 0 and 1, got 1.5"),
        ("cutmix_prob", float("nan"), "cutmix_prob must be between 0 and 1, got nan"),
        ("cutmix_alpha", 0.0, "cutmix_alpha must be above 0 and at most 100, got 0.0"),
        ("cutmix_alpha", 0.5, "cutmix_alpha applies only with CutMix on"),
    ],
)
def test_config_validation_names_the_field(tmp_path, field, value, message):
    with pytest.raises(ConfigError, match=message):
        tiny_train_config(tmp_path, tmp_path / "out", **{field: value}).validate()


def test_config_validation_lists_all_fields(tmp_path):
    config = tiny_train_config(tmp_path, tmp_path / "out", epochs=0, batch_size=1, device="tpu")

    with pytest.raises(ConfigError) as raised:
        config.validate()

    message = str(raised.value)
    assert message.startswith("epochs must be at least 1, got 0; ")
    assert "batch_size must be at least 2, got 1" in message
    assert "device must be auto, cpu or cuda" in message


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown config keys: colour"):
        TrainConfig.from_dict({"data_dir": "d", "out_dir": "o", "colour": "red"})


def test_weight_average_update_step():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.5)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()(torch.randn(4, 3))  # one batch-norm update: num_batches_tracked becomes 1

    average.update(model)

    # First update: decay is min(0.5, 2 / 11), so the average moves 9/11 of the way.
    assert torch.allclose(average.model[0].weight, start + 9 / 11)
    assert average.model[1].num_batches_tracked.item() == 1
    assert not average.model[0].weight.requires_grad


def test_fit_with_ema_saves_average(tiny_dataset, tmp_path):
    raw = fit(tiny_train_config(tiny_dataset, tmp_path / "raw", epochs=2))
    averaged = fit(tiny_train_config(tiny_dataset, tmp_path / "ema", epochs=2, ema_decay=0.9))

    assert read_description(averaged.model_dir)["config"]["ema_decay"] == 0.9
    # Same seed, same batches: only the saved weights differ.
    assert averaged.history[0]["train_loss"] == pytest.approx(raw.history[0]["train_loss"], rel=1e-5)
    raw_head = load_checkpoint(raw.model_dir)[0].get_classifier().weight
    ema_head = load_checkpoint(averaged.model_dir)[0].get_classifier().weight
    assert not torch.allclose(raw_head, ema_head)
    # The training weights are scored too, and the extra pass leaves training unchanged.
    assert "raw_val_macro_f1" not in raw.history[0]
    for averaged_epoch, plain_epoch in zip(averaged.history, raw.history):
        assert averaged_epoch["raw_val_macro_f1"] == pytest.approx(plain_epoch["val_macro_f1"])
        assert averaged_epoch["train_loss"] == pytest.approx(plain_epoch["train_loss"], rel=1e-5)


def test_fit_continues_from_saved_model(tiny_dataset, tmp_path):
    first = fit(tiny_train_config(tiny_dataset, tmp_path / "first", epochs=2))

    continued = fit(
        tiny_train_config(
            tiny_dataset, tmp_path / "continued", epochs=1, learning_rate=1e-4, init_from=str(first.model_dir)
        )
    )

    fresh = fit(tiny_train_config(tiny_dataset, tmp_path / "fresh", epochs=1, learning_rate=1e-4))

    # At a low learning rate, trained weights start from a lower loss than a new head.
    assert continued.history[0]["train_loss"] < fresh.history[0]["train_loss"]
    origin = read_description(continued.model_dir)["init_from"]
    assert origin["path"] == str(first.model_dir)
    assert origin["weights_sha256"] == read_description(first.model_dir)["weights_sha256"]
    # The starting weights are scored on the same validation photos first.
    assert origin["val_macro_f1"] == pytest.approx(first.val_metrics["macro_f1"])


def test_init_from_rejects_other_split(tiny_dataset, tmp_path):
    first = fit(tiny_train_config(tiny_dataset, tmp_path / "first", epochs=1, seed=0))

    with pytest.raises(ConfigError, match=r"validation split \(split seed 0.*differs.*split seed 5"):
        fit(tiny_train_config(tiny_dataset, tmp_path / "other", epochs=1, split_seed=5, init_from=str(first.model_dir)))
    assert not (tmp_path / "other").exists()


def test_init_from_rejects_other_backbone(tiny_dataset, tmp_path):
    first = fit(tiny_train_config(tiny_dataset, tmp_path / "first", epochs=1))

    with pytest.raises(ConfigError, match="its backbone is 'efficientnet_lite0', not 'efficientnet_lite1'"):
        fit(
            tiny_train_config(
                tiny_dataset,
                tmp_path / "other",
                epochs=1,
                backbone="efficientnet_lite1",
                init_from=str(first.model_dir),
            )
        )


def test_init_from_needs_model_json(tmp_path):
    with pytest.raises(ConfigError, match=r"init_from must be a model folder with model\.json"):
        tiny_train_config(tmp_path, tmp_path / "out", init_from=str(tmp_path)).validate()


def test_distillation_loss_is_scaled_kl_divergence():
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    teacher = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 3.0]])
    temperature = 2.0

    p_teacher = torch.softmax(teacher / temperature, dim=1)
    p_student = torch.softmax(student / temperature, dim=1)
    by_hand = (p_teacher * (p_teacher.log() - p_student.log())).sum(dim=1).mean() * temperature**2

    assert distillation_loss(student, teacher, temperature).item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert distillation_loss(teacher, teacher, temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_student_records_its_teacher(tiny_dataset, tmp_path):
    teacher = fit(tiny_train_config(tiny_dataset, tmp_path / "teacher", epochs=2, seed=3, split_seed=0))
    plain = fit(tiny_train_config(tiny_dataset, tmp_path / "plain", epochs=1, seed=0))

    student = fit(
        tiny_train_config(
            tiny_dataset, tmp_path / "student", epochs=1, seed=0, teacher=str(teacher.model_dir), distill_weight=1.0
        )
    )

    origin = read_description(student.model_dir)["teacher"]
    assert origin["path"] == str(teacher.model_dir)
    assert origin["weights_sha256"] == read_description(teacher.model_dir)["weights_sha256"]
    assert origin["val_macro_f1"] == pytest.approx(teacher.val_metrics["macro_f1"])
    # With the whole loss spent on matching the teacher, the loss is a KL divergence,
    # not the label-smoothed cross-entropy of the plain run.
    assert student.history[0]["train_loss"] != pytest.approx(plain.history[0]["train_loss"], rel=1e-3)


def test_zero_distill_weight_matches_plain_run(tiny_dataset, tmp_path):
    teacher = fit(tiny_train_config(tiny_dataset, tmp_path / "teacher", epochs=1, seed=3, split_seed=0))
    plain = fit(tiny_train_config(tiny_dataset, tmp_path / "plain", epochs=2, seed=0))

    student = fit(
        tiny_train_config(
            tiny_dataset, tmp_path / "student", epochs=2, seed=0, teacher=str(teacher.model_dir), distill_weight=0.0
        )
    )

    # Scoring the teacher first must not change the random draws of training.
    for student_epoch, plain_epoch in zip(student.history, plain.history):
        assert student_epoch["train_loss"] == pytest.approx(plain_epoch["train_loss"], rel=1e-5)


def test_teacher_rejects_other_split_and_input(tiny_dataset, tmp_path):
    teacher = fit(tiny_train_config(tiny_dataset, tmp_path / "teacher", epochs=1, seed=0))

    with pytest.raises(ConfigError) as raised:
        fit(
            tiny_train_config(
                tiny_dataset,
                tmp_path / "student",
                epochs=1,
                split_seed=5,
                image_size=48,
                teacher=str(teacher.model_dir),
            )
        )

    message = str(raised.value)
    assert message.startswith(f"teacher {teacher.model_dir} does not match this run: ")
    assert "it takes 32 px input" in message
    assert "this run 48 px" in message
    assert "validation split (split seed 0" in message
    assert not (tmp_path / "student").exists()


def test_teacher_with_other_backbone(tiny_dataset, tmp_path):
    teacher = fit(tiny_train_config(tiny_dataset, tmp_path / "teacher", epochs=1, backbone="efficientnet_lite1"))

    student = fit(tiny_train_config(tiny_dataset, tmp_path / "student", epochs=1, teacher=str(teacher.model_dir)))

    assert read_description(student.model_dir)["teacher"]["model_version"].startswith("efficientnet_lite1-")
    assert read_description(student.model_dir)["backbone"] == "efficientnet_lite0"


def test_ensemble_as_teacher(tiny_dataset, tmp_path):
    from ml.averaging import compare_on_validation

    members = [
        str(fit(tiny_train_config(tiny_dataset, tmp_path / f"m{seed}", epochs=1, seed=seed, split_seed=0)).model_dir)
        for seed in (0, 1)
    ]
    ensemble = compare_on_validation(members, out_dir=tmp_path / "ensemble", keep="ensemble", device="cpu")

    student = fit(tiny_train_config(tiny_dataset, tmp_path / "student", epochs=1, teacher=ensemble["out_dir"]))

    origin = read_description(student.model_dir)["teacher"]
    assert origin["path"] == ensemble["out_dir"]
    assert origin["val_macro_f1"] == pytest.approx(ensemble["rows"][2]["macro_f1"])


def test_non_finite_loss_stops_training():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 2), torch.nn.Flatten())
    before = model[0].weight.detach().clone()
    loader = [(torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,)))]
    config = TrainConfig(data_dir="d", out_dir="o", epochs=1, device="cpu")
    optimizer, scheduler = build_optimizer(model, config, len(loader))

    def nan_loss(logits, targets):
        return logits.sum() * float("nan")

    with pytest.raises(
        TrainingError,
        match=r"training loss became nan in epoch 1, batch 1, so training stopped\. Lower the learning rate",
    ):
        train_one_epoch(
            model,
            loader,
            optimizer,
            scheduler,
            nan_loss,
            torch.device("cpu"),
            config,
            1,
            lambda event: None,
            lambda: False,
        )

    assert torch.equal(model[0].weight, before)


def test_cutmix_pastes_one_box():
    # Each image is filled with its own index, so every pixel shows its source image.
    images = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 3, 20, 30).clone()

    mixed, order, own_share = CutMix(prob=1.0, alpha=1.0, seed=4)(images)

    assert sorted(order.tolist()) == list(range(8))
    for index in range(8):
        pasted = mixed[index, 0] == order[index]
        own = mixed[index, 0] == index
        # Pixels are either the image's own or its partner's; the partner's share is 1 - own_share.
        assert torch.all(pasted | own)
        if order[index] != index:
            assert pasted.float().mean().item() == pytest.approx(1 - own_share)
            rows, columns = pasted.nonzero(as_tuple=True)
            box = (rows.max() - rows.min() + 1) * (columns.max() - columns.min() + 1)
            assert box.item() == pasted.sum().item()  # one solid rectangle
    assert 0 <= own_share <= 1
    assert torch.equal(images[:, 0, 0, 0], torch.arange(8, dtype=torch.float32))  # input untouched


def test_cutmix_batch_share_and_seed():
    images = torch.rand(4, 3, 16, 16)

    def draws(seed):
        cutmix = CutMix(prob=0.5, alpha=1.0, seed=seed)
        return [cutmix(images) for _ in range(200)]

    first, again = draws(1), draws(1)
    mixed_batches = [own_share for _, order, own_share in first if order is not None]
    assert 70 <= len(mixed_batches) <= 130
    # Beta(1, 1) gives half the area on average; boxes clipped at the edges keep more.
    assert 0.5 < sum(mixed_batches) / len(mixed_batches) < 0.85
    assert [own_share for _, _, own_share in first] == [own_share for _, _, own_share in again]
    assert all(order is None and own_share == 1.0 and out is images for out, order, own_share in first if order is None)


def test_fit_cutmix_and_plain_runs(tiny_dataset, tmp_path):
    plain = fit(tiny_train_config(tiny_dataset, tmp_path / "plain", epochs=1, seed=0))
    mixed = fit(
        tiny_train_config(tiny_dataset, tmp_path / "mixed", epochs=1, seed=0, cutmix_prob=1.0, cutmix_alpha=2.0)
    )
    plain_again = fit(tiny_train_config(tiny_dataset, tmp_path / "again", epochs=1, seed=0, cutmix_prob=0.0))

    assert mixed.history[0]["train_loss"] != pytest.approx(plain.history[0]["train_loss"], rel=1e-3)
    assert plain_again.history[0]["train_loss"] == pytest.approx(plain.history[0]["train_loss"], rel=1e-5)
    stored = read_description(mixed.model_dir)["config"]
    assert (stored["cutmix_prob"], stored["cutmix_alpha"]) == (1.0, 2.0)
