import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from training_jobs.models import Dataset

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_import_dataset_prints_counts(db, dataset_folder):
    output = StringIO()

    call_command("import_dataset", str(dataset_folder), "--name", "mini", stdout=output)

    text = output.getvalue()
    dataset = Dataset.objects.get(name="mini")
    assert dataset.path == str(dataset_folder.resolve())
    assert "altar" in text
    assert "total                      9       9" in text
    assert "Ready for training jobs." in text


def test_import_dataset_rescan_keeps_name(db, dataset_folder):
    call_command("import_dataset", str(dataset_folder), "--name", "mini", stdout=StringIO())

    call_command("import_dataset", str(dataset_folder), stdout=StringIO())

    assert list(Dataset.objects.values_list("name", flat=True)) == ["mini"]


def test_import_dataset_warns_about_gaps(db, dataset_folder):
    (dataset_folder / "test" / "apse" / "junk.jpg").write_text("plain text")
    for image in (dataset_folder / "train" / "vault").iterdir():
        image.unlink()
    output = StringIO()

    call_command("import_dataset", str(dataset_folder), stdout=output)

    text = output.getvalue()
    assert "Classes with no images in train/: vault" in text
    assert "1 unreadable file:" in text
    assert "test/apse/junk.jpg" in text
    assert "cannot use this dataset" in text


def test_import_dataset_rejects_missing_folder(db, tmp_path):
    with pytest.raises(CommandError, match="not found"):
        call_command("import_dataset", str(tmp_path / "absent"))

    assert not Dataset.objects.exists()


def test_web_modules_do_not_import_torch():
    """The web process loads URLs, views, admin, API and the metrics the dashboard uses without torch."""
    code = (
        "import sys, django; django.setup();"
        "import heritage_site.urls, training_jobs.admin, training_jobs.api, training_jobs.views, training_jobs.tasks;"
        "from django.urls import resolve; resolve('/training/');"
        "from training_jobs import selectors; selectors.job_defaults();"
        "import ml.metrics;"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"DJANGO_SETTINGS_MODULE": "heritage_site.settings_test", "PATH": "/usr/bin:/bin"},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
