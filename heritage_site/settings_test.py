"""Test overrides: uploaded files, the broker folder and the SQLite database stay out of ``var/``.

Each override reads its environment variable first, so that a Celery worker
started by the end-to-end tests uses the same folders as the test process.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("DJANGO_ENV", "test")
# True in the process that made the folder; conftest.py removes it at the end
# of the session. Worker processes inherit HERITAGE_TEST_ROOT and reuse it.
TEST_ROOT_CREATED = "HERITAGE_TEST_ROOT" not in os.environ
_TEST_ROOT = Path(os.environ.setdefault("HERITAGE_TEST_ROOT", tempfile.mkdtemp(prefix="heritage-test-")))
os.environ.setdefault("MEDIA_ROOT", str(_TEST_ROOT / "media"))
os.environ.setdefault("CELERY_BROKER_DIR", str(_TEST_ROOT / "broker"))

from heritage_site.settings import *  # noqa: E402,F403
from heritage_site.settings import DATABASES, REST_FRAMEWORK  # noqa: E402

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One file per test session, so that two sessions running at once do
    # not delete each other's database.
    DATABASES["default"]["TEST"] = {"NAME": str(_TEST_ROOT / "test-db.sqlite3")}
    if "DATABASE_URL" not in os.environ:
        # A subprocess that sets up Django outside pytest opens this name,
        # and var/ does not exist in a fresh clone.
        DATABASES["default"]["NAME"] = str(_TEST_ROOT / "db.sqlite3")

# Tests send tasks to a filesystem broker in the temporary folder, even when
# CELERY_BROKER_URL points at a real Redis (as in CI). The end-to-end
# fixtures set HERITAGE_TEST_BROKER_URL for the worker processes they start.
CELERY_BROKER_URL = os.environ.get("HERITAGE_TEST_BROKER_URL", "filesystem://localhost/")
# Celery reads this variable itself and prefers it to broker_url.
os.environ.pop("CELERY_BROKER_URL", None)

# WhiteNoise warns at every request when the folder is missing.
STATIC_ROOT = _TEST_ROOT / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Django 5.2's default PBKDF2 hasher runs 1,000,000 iterations per password,
# which would slow every test that logs in.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        "uploads_anon": os.environ.get("THROTTLE_ANON_UPLOADS", "5/minute"),
        "uploads_user": os.environ.get("THROTTLE_USER_UPLOADS", "1000/minute"),
        "token_requests": os.environ.get("THROTTLE_TOKEN_REQUESTS", "10/minute"),
    },
}
