"""Settings from the environment, the Compose file, and the production settings on real PostgreSQL and Redis."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from conftest import REDIS_URL, REPO_ROOT, make_image_bytes, port_open, require_service

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://heritage:heritage@127.0.0.1:5432/heritage")
SECRET = "production-test-secret-" + "x" * 40
COMPOSE_ENV = {"SECRET_KEY": SECRET, "ALLOWED_HOSTS": "heritage.example.org", "POSTGRES_PASSWORD": "compose-password"}


def _django_check(env: dict[str, str], code: str = "print('configured')") -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "heritage_site.settings"}
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_development_defaults_need_no_environment():
    result = _django_check({})

    assert result.returncode == 0, result.stderr
    assert "configured" in result.stdout


def test_default_broker_connects_without_a_warning(tmp_path):
    # kombu warns "No hostname was supplied" on every connection to a URL without one,
    # which every command that queued a task used to print.
    connect = "from heritage_site.celery import app; print(app.connection_for_write().as_uri())"

    result = _django_check({"HERITAGE_VAR_DIR": str(tmp_path)}, connect)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("filesystem://")
    assert "No hostname was supplied" not in result.stderr
    assert (tmp_path / "broker" / "queue").is_dir()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "SECRET_KEY is required"),
        ({"SECRET_KEY": "short"}, "at least 32 characters"),
        ({"SECRET_KEY": SECRET}, "ALLOWED_HOSTS is required"),
        ({"SECRET_KEY": SECRET, "ALLOWED_HOSTS": "a.example"}, "DATABASE_URL is required"),
        (
            {"SECRET_KEY": SECRET, "ALLOWED_HOSTS": "a.example", "DATABASE_URL": "postgres://u:p@db/h"},
            "CELERY_BROKER_URL is required",
        ),
    ],
)
def test_production_rejects_missing_secrets(env, expected):
    result = _django_check({"DJANGO_ENV": "production", **env})

    assert result.returncode != 0
    assert expected in result.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"UPLOAD_MAX_BYTES": "ten"}, "UPLOAD_MAX_BYTES='ten' is not an integer"),
        ({"THROTTLE_ANON_UPLOADS": "lots"}, "is not a rate"),
        ({"DJANGO_ENV": "staging"}, "DJANGO_ENV='staging' is invalid"),
        ({"INFERENCE_CLAIM_TIMEOUT": "10"}, "INFERENCE_CLAIM_TIMEOUT must be longer"),
        ({"DATABASE_URL": "postgre://u:p@db/h"}, "DATABASE_URL='postgre://u:p@db/h' is not a supported URL"),
        ({"DATABASE_URL": "db.example.org"}, "DATABASE_URL='db.example.org' is not a supported URL"),
        ({"CELERY_BROKER_URL": "redis:/localhost"}, "CELERY_BROKER_URL='redis:/localhost' is not a supported URL"),
        ({"CELERY_BROKER_URL": "amqp://localhost"}, "It must start with one of: redis://, rediss://, filesystem://"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL='VERBOSE' is invalid"),
        ({"IMAGE_ALLOWED_FORMATS": "JPG,PNG"}, "unknown image formats JPG (JPEG is spelled JPEG)"),
        ({"IMAGE_ALLOWED_FORMATS": ","}, "IMAGE_ALLOWED_FORMATS is empty"),
        ({"INFERENCE_DEVICE": "gpu"}, "INFERENCE_DEVICE='gpu' is not a device"),
        ({"TRAINING_JOB_DEVICE": "cuda:x"}, "TRAINING_JOB_DEVICE='cuda:x' is not a device"),
        ({"CACHE_URL": "memcached://localhost"}, "CACHE_URL='memcached://localhost' is not a supported URL"),
    ],
)
def test_invalid_setting_values_rejected(env, expected):
    result = _django_check(env)

    assert result.returncode != 0
    assert expected in result.stderr


def test_accepted_spellings_of_settings():
    result = _django_check(
        {
            "LOG_LEVEL": "warning",
            "IMAGE_ALLOWED_FORMATS": "jpeg,png",
            "INFERENCE_DEVICE": "cuda:1",
            "TRAINING_JOB_DEVICE": "CPU",
        }
    )

    assert result.returncode == 0, result.stderr


def test_manage_py_prints_configuration_error_without_traceback():
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env={**base, "DEBUG": "maybe"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Configuration error: Environment variable DEBUG='maybe' is not a boolean; use 1/0, true/false, yes/no or on/off."
    )


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    executable = shutil.which("docker-compose")
    require_service(executable is not None, "docker-compose (Debian package) is not installed")
    clean_env = {key: value for key, value in os.environ.items() if key not in COMPOSE_ENV}
    return subprocess.run(
        [executable, "-f", str(REPO_ROOT / "docker-compose.yml"), "config"],
        cwd=REPO_ROOT,
        env={**clean_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.services
def test_compose_config_valid():
    result = _compose_config(COMPOSE_ENV)

    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"web", "inference-worker", "training-worker", "beat", "postgres", "redis"}
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
    assert set(config["volumes"]) >= {"media", "postgres", "redis"}
    assert "gunicorn" in " ".join(
        services["web"]["command"] if isinstance(services["web"]["command"], list) else [services["web"]["command"]]
    )
    assert services["web"]["environment"]["DJANGO_ENV"] == "production"
    assert services["web"]["environment"]["SECRET_KEY"] == SECRET
    assert "-Q inference" in str(services["inference-worker"]["command"])
    assert "-Q training" in str(services["training-worker"]["command"])
    devices = services["training-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert services["web"]["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.services
def test_compose_file_requires_secret_key():
    result = _compose_config({key: value for key, value in COMPOSE_ENV.items() if key != "SECRET_KEY"})

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _postgres_available() -> bool:
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture
def production_database():
    """A fresh PostgreSQL database for one production run, dropped afterwards."""
    require_service(_postgres_available(), f"PostgreSQL is not reachable at {POSTGRES_URL}")

    name = f"heritage_prod_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _wait_http(url: str, timeout: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} not responding after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _multipart(field: str, name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.services
def test_production_settings_serve_with_postgres_and_redis(production_database, tmp_path, tiny_model_dir):
    require_service(port_open(REDIS_URL), f"Redis is not reachable at {REDIS_URL}")
    port = _free_port()
    env = {
        **{key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"},
        "DJANGO_SETTINGS_MODULE": "heritage_site.settings",
        "DJANGO_ENV": "production",
        "SECRET_KEY": SECRET,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": production_database,
        "CELERY_BROKER_URL": REDIS_URL,
        "CACHE_URL": REDIS_URL,
        "MEDIA_ROOT": str(tmp_path / "media"),
        "STATIC_ROOT": str(tmp_path / "static"),
        "HERITAGE_VAR_DIR": str(tmp_path / "var"),
        "DEFAULT_MODEL_DIR": str(tiny_model_dir),
        "DJANGO_SUPERUSER_USERNAME": "operator",
        "DJANGO_SUPERUSER_PASSWORD": "operator-password-123",
    }
    manage = [sys.executable, "manage.py"]
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"], ["prepare_site"]):
        result = subprocess.run(
            [*manage, *command], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stderr

    log = tmp_path / "stack.log"
    with open(log, "ab") as output:
        web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "heritage_site.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--timeout",
                "60",
            ],  # as in docker-compose.yml: longer than the API's 30 s wait
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "heritage_site",
                "worker",
                "-Q",
                "inference",
                "-n",
                f"prodcheck-{port}@%h",
                "--pool",
                "prefork",
                "--concurrency",
                "1",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/healthz", 60, web, log)

        with urllib.request.urlopen(f"{base}/static/css/site.css", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/", timeout=5) as response:
            assert b"Heritage Lens" in response.read()

        body, content_type = _multipart("file", "facade.jpg", make_image_bytes("JPEG", (90, 60)))
        request = urllib.request.Request(
            f"{base}/api/v1/images/?wait=30", data=body, headers={"Content-Type": content_type}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            import json

            result = json.loads(response.read())["results"][0]
        assert result["status"] == "done", log.read_text()[-3000:]
        assert result["prediction"]["model_version"]
    finally:
        for process in (web, worker):
            process.terminate()
        for process in (web, worker):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.django_db
def test_migrations_match_models():
    from django.core.management import call_command

    # Exits with status 1 (SystemExit) when a model change has no migration.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_dockerfile_pins_torch_and_runs_gunicorn():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith((" ", "#"))]

    assert instructions[0] == "FROM"
    assert "pip install torch==2.14.1 torchvision==0.29.1" in dockerfile
    assert "collectstatic" in dockerfile
    assert "HEALTHCHECK" in instructions
    assert "USER" in instructions
    assert '"gunicorn", "heritage_site.wsgi"' in dockerfile


def test_openapi_schema_valid_without_warnings(tmp_path):
    from django.core.management import call_command

    schema_file = tmp_path / "schema.yaml"

    # Exits with status 1 (SystemExit) on a warning or an invalid schema.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(schema_file))

    paths = yaml.safe_load(schema_file.read_text())["paths"]
    assert "/api/v1/images/" in paths
    assert "/api/v1/auth/token/" in paths
