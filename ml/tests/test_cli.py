import json
import subprocess
import sys
import warnings

import pytest
from PIL import Image

from ml.cli import main
from ml.testing import make_tiny_checkpoint


def test_predict_json_reports_each_file(tiny_model, tmp_path, capsys):
    good = tmp_path / "good photo (1).png"
    Image.new("RGB", (50, 40), (100, 50, 20)).save(good)
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is text")

    code = main(["predict", "--model", str(tiny_model), "--json", str(good), str(bad), str(tmp_path / "absent.jpg")])

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [line["file"] for line in lines] == [str(good), str(bad), str(tmp_path / "absent.jpg")]
    assert set(lines[0]) == {"file", "label", "probabilities"}
    assert len(lines[0]["probabilities"]) == 10
    assert lines[0]["label"] == max(lines[0]["probabilities"], key=lines[0]["probabilities"].get)
    assert set(lines[1]) == {"file", "error"}
    assert "not an image" in lines[1]["error"]
    assert "not found" in lines[2]["error"]


def test_predict_explains_model_folder_given_as_file(tiny_model, tmp_path, capsys):
    photo = tmp_path / "nave.png"
    Image.new("RGB", (50, 40), (100, 50, 20)).save(photo)

    code = main(["predict", "--model", str(tiny_model), "--json", str(tiny_model), str(tmp_path), str(photo)])

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert (
        lines[0]["error"]
        == f"{tiny_model} is a model folder, not an image. To classify with it, pass --model {tiny_model}"
    )
    assert lines[1]["error"] == f"{tmp_path} is a folder, not an image file"
    assert "label" in lines[2]


def test_predict_prints_top_classes(tiny_model, tmp_path, capsys):
    photo = tmp_path / "a.jpg"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(photo)

    assert main(["predict", "--model", str(tiny_model), "--top", "2", str(photo)]) == 0

    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{photo}: ")
    assert line.count(",") == 1


def test_predict_rejects_oversized_images(tiny_model, tmp_path, capsys, monkeypatch):
    small, large, huge = tmp_path / "small.png", tmp_path / "large.png", tmp_path / "huge.png"
    Image.new("RGB", (40, 30)).save(small)
    Image.new("RGB", (40, 40)).save(large)
    Image.new("RGB", (60, 60)).save(huge)
    # Pillow warns above MAX_IMAGE_PIXELS and raises an error above twice that.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        code = main(
            ["predict", "--model", str(tiny_model), "--json", "--max-pixels", "1500", *map(str, (small, large, huge))]
        )

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert "label" in lines[0]
    assert lines[1]["error"] == "the image is 40 × 40 pixels, more than the limit of 1,500"
    assert lines[2]["error"].startswith("the image has more pixels than Pillow decodes safely: ")


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_predict_rejects_bad_top(tiny_model, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exited:
        main(["predict", "--model", str(tiny_model), "--top", value, str(tmp_path / "a.jpg")])

    assert exited.value.code == 2
    assert "argument --top: must be" in capsys.readouterr().err


def test_evaluate_json_has_comparison_with_paper(tiny_model, tiny_dataset, capsys, monkeypatch):
    from ml.data import content_fingerprint, list_split

    # Pretend the tiny test split is AHE's: only scores on it get a verdict.
    split = list_split(tiny_dataset, "test")
    monkeypatch.setattr("ml.reference.AHE_TEST_FINGERPRINT", content_fingerprint(split.samples, split.class_names))
    assert main(["evaluate", str(tiny_model), "--data", str(tiny_dataset), "--json", "--device", "cpu"]) == 0

    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 60
    assert summary["comparable_with_published"] is True
    rows = {row["class"]: row for row in summary["comparison"]}
    assert rows["apse"]["paper_f1"] == 0.874
    assert rows["apse"]["hrnet_w64_f1"] == 0.909
    assert rows["apse"]["beats_paper"] == (summary["per_class"]["apse"]["f1"] > 0.874)
    low, high = rows["apse"]["f1_interval"]
    assert low <= summary["per_class"]["apse"]["f1"] <= high
    assert summary["intervals"]["macro_f1"][0] <= summary["macro_f1"] <= summary["intervals"]["macro_f1"][1]


def test_evaluate_gives_no_verdict_on_other_photos(tiny_model, tiny_dataset, capsys):
    assert main(["evaluate", str(tiny_model), "--data", str(tiny_dataset), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert main(["evaluate", str(tiny_model), "--data", str(tiny_dataset), "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)

    assert "not AHE's official test split" in table
    assert summary["comparable_with_published"] is False
    assert {row["beats_paper"] for row in summary["comparison"]} == {None}
    assert summary["comparison"][1]["paper_f1"] == 0.874


def test_evaluate_tables_show_intervals(tiny_model, tiny_dataset, capsys, tmp_path):
    markdown = tmp_path / "results.md"
    test_file = min((tiny_dataset / "test" / "altar").iterdir())
    (tiny_dataset / "near_duplicates_train_test.tsv").write_text(
        f"# train\ttest\ntrain/altar/x.jpg\t{test_file.relative_to(tiny_dataset)}\n"
    )
    assert (
        main(["evaluate", str(tiny_model), "--data", str(tiny_dataset), "--markdown", str(markdown), "--device", "cpu"])
        == 0
    )

    assert "95% bootstrap intervals (1000 resamples of the images)" in capsys.readouterr().out
    assert "| F1 interval |" in markdown.read_text()
    assert "Without the 1 test images that have a near-duplicate in train (59 images)" in markdown.read_text()


def test_train_reports_missing_dataset(tmp_path, capsys):
    code = main(
        [
            "train",
            "--data",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "out"),
            "--backbone",
            "efficientnet_lite0",
        ]
    )

    assert code == 2
    assert "dataset folder not found" in capsys.readouterr().err


def test_module_entry_point_shows_help():
    completed = subprocess.run([sys.executable, "-m", "ml", "--help"], capture_output=True, text=True, check=True)

    assert "train" in completed.stdout
    assert "predict" in completed.stdout


def test_ml_never_imports_django():
    code = "import ml.cli, ml.training, ml.inference, ml.evaluation, ml.export, sys; print('django' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert completed.stdout.strip() == "False"


@pytest.mark.parametrize("flag", ["--json"])
def test_predict_default_model_is_used_without_model_flag(monkeypatch, tiny_model, tmp_path, capsys, flag):
    import ml

    monkeypatch.setattr(ml, "DEFAULT_MODEL_DIR", tiny_model)
    photo = tmp_path / "x.webp"
    Image.new("RGB", (30, 30)).save(photo)

    assert main(["predict", flag, str(photo)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ml.data.AHE_CLASSES


def test_average_without_training_config(tiny_model, tmp_path, capsys):
    other = make_tiny_checkpoint(tmp_path / "other", image_size=32, seed=1)

    assert main(["average", str(tiny_model), str(other), "--device", "cpu"]) == 2

    assert "has an unreadable training config" in capsys.readouterr().err


def test_benchmark_ensemble_baseline(tmp_path, capsys):
    from ml.benchmark import run_benchmarks

    folder = make_tiny_checkpoint(tmp_path / "ensemble", image_size=32, backbone="efficientnet_lite0", ensemble_size=2)

    run_benchmarks(folder, repeats=2, device="cpu", sides=(64,))

    out = capsys.readouterr().out
    assert "ensemble of 2 x tf_efficientnet_lite0" in out
    assert "plain timm runs 2 networks in turn" in out
    assert "batch of 64, images/s" in out


def test_evaluate_record_stores_test_scores(tiny_model, tiny_dataset, tmp_path, capsys):
    import shutil

    from ml.checkpoints import load_checkpoint, read_description

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    weights_before = (model / "model.safetensors").read_bytes()

    assert main(["evaluate", str(model), "--data", str(tiny_dataset), "--record", "--device", "cpu"]) == 0

    recorded = read_description(model)["metrics"]["test"]
    table = capsys.readouterr().out
    assert f"accuracy {recorded['accuracy']:.4f}   macro-F1 {recorded['macro_f1']:.4f}" in table
    assert recorded["n"] == 60
    assert set(recorded["per_class"]) == set(recorded["class_names"])
    assert sum(map(sum, recorded["confusion_matrix"])) == 60
    assert len(recorded["split_fingerprint"]) == 16
    assert (model / "model.safetensors").read_bytes() == weights_before
    load_checkpoint(model)


def test_train_flags_set_distillation_fields(tmp_path):
    from ml.cli import _train_config, build_parser

    args = build_parser().parse_args(
        ["train", "--data", "d", "--out", "o", "--teacher", "runs/t", "--distill-weight", "0.3"]
    )
    config = _train_config(args)

    assert config.teacher == "runs/t"
    assert config.distill_weight == 0.3
    assert config.distill_temperature == 2.0


def test_train_reports_missing_teacher(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--teacher", str(tmp_path / "t")])

    assert code == 2
    assert f"teacher must be a model folder with model.json, got {tmp_path / 't'}" in capsys.readouterr().err


def test_train_config_error_names_the_flag(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--distill-weight", "0.3"])

    err = capsys.readouterr().err
    assert code == 2
    assert "distill_weight and distill_temperature apply only with a teacher" in err
    assert "(distill_weight is set by --distill-weight)" in err
    assert "(distill_temperature is set by --distill-temperature)" in err
    assert "--split-seed" not in err


def test_train_config_error_names_renamed_flags(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--workers", "-1"])

    err = capsys.readouterr().err
    assert code == 2
    assert "num_workers" in err
    assert "(num_workers is set by --workers)" in err


def test_train_flags_set_cutmix_fields():
    from ml.cli import _train_config, build_parser

    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--cutmix-prob", "0.5"])
    config = _train_config(args)

    assert (config.cutmix_prob, config.cutmix_alpha) == (0.5, 1.0)


def test_train_rejects_cutmix_alpha_without_cutmix(tmp_path, capsys):
    code = main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--cutmix-alpha", "0.4"])

    err = capsys.readouterr().err
    assert code == 2
    assert "cutmix_alpha applies only with CutMix on: set cutmix_prob above 0" in err
    assert "(cutmix_alpha is set by --cutmix-alpha)" in err


@pytest.mark.parametrize("command", [["train", "--data", "d"], ["export", "m"], ["average", "a", "b"]])
def test_out_folder_with_model_rejected(tmp_path, capsys, command):
    (tmp_path / "model.json").write_text("{}")

    code = main([*command, "--out", str(tmp_path)])

    assert code == 2
    assert f"error: {tmp_path} already contains a model (model.json)" in capsys.readouterr().err
    assert (tmp_path / "model.json").read_text() == "{}"


def test_overwrite_lets_train_reuse_out_folder(tmp_path, capsys):
    (tmp_path / "model.json").write_text("{}")

    code = main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path), "--overwrite"])

    err = capsys.readouterr().err
    assert code == 2
    assert "already contains a model" not in err
    assert f"dataset folder not found: {tmp_path / 'missing'}" in err


def test_missing_flag_error_has_no_repeated_hint(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "out")])

    err = capsys.readouterr().err
    assert code == 2
    assert "error: --data is required unless --config gives data_dir" in err
    assert "is set by --data" not in err


def test_out_file_rejected(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")

    code = main(["train", "--data", str(tmp_path), "--out", str(target)])

    assert code == 2
    assert f"error: {target} is a file, not a folder. Choose a folder for --out." in capsys.readouterr().err
    assert target.read_text() == "keep me"
