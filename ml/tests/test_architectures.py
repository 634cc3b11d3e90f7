"""The committed list of timm architecture names, which the web process reads without importing torch."""

import pytest

from ml import architectures


def test_list_matches_installed_timm():
    version, names = architectures.installed_architectures()

    assert architectures.listed_timm_version() == version, "run python -m ml.architectures --write"
    assert architectures.known_architectures() == frozenset(names), "run python -m ml.architectures --write"


@pytest.mark.parametrize(
    ("name", "known"),
    [("resnet50", True), ("resnet50.a1_in1k", True), ("tf_efficientnet_lite2", True), ("resnet5", False), ("", False)],
)
def test_is_known_architecture(name, known):
    assert architectures.is_known_architecture(name) is known


def test_message_without_close_match():
    message = architectures.unknown_architecture_message("zzzz")

    assert message.startswith("backbone 'zzzz' is not a timm ")
    assert message.endswith("timm.list_models() lists the names.")


def test_check_command_reports_stale_list(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "timm_architectures.txt"
    stale.write_text("# timm 0.0.1\nresnet50\n")
    monkeypatch.setattr(architectures, "ARCHITECTURES_FILE", stale)
    architectures._read_list.cache_clear()

    try:
        status = architectures.main([])
    finally:
        architectures._read_list.cache_clear()

    assert status == 1
    assert "lists timm 0.0.1" in capsys.readouterr().err
