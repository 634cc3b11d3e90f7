"""Settings for Heritage Lens, read from environment variables.

Local defaults let ``make run`` work with no setup (SQLite, a filesystem
broker, media under ``var/``). With ``DJANGO_ENV=production`` the secret key,
allowed hosts, database and broker must be set explicitly; nothing falls back
to a development value.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from heritage_site.env import (
    env_bool,
    env_choice,
    env_device,
    env_float,
    env_formats,
    env_int,
    env_list,
    env_rate,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("HERITAGE_VAR_DIR", str(BASE_DIR / "var")))

DJANGO_ENV = env_choice("DJANGO_ENV", "development", ("development", "production", "test"))
IS_PRODUCTION = DJANGO_ENV == "production"

if IS_PRODUCTION:
    SECRET_KEY = env_str("SECRET_KEY", required=True)
    if len(SECRET_KEY) < 32:
        raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters long in production.")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [])
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS is required in production (comma-separated host names).")
else:
    SECRET_KEY = env_str("SECRET_KEY", "django-insecure-local-development-key-not-for-production")
    ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])

DEBUG = env_bool("DEBUG", not IS_PRODUCTION)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "classifier",
    "training_jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # After the session and messages middleware, whose set-up it uses; its
    # check runs before the CSRF check, which would parse the body first.
    "heritage_site.middleware.TooManyFilesMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "heritage_site.urls"
WSGI_APPLICATION = "heritage_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: DATABASE_URL, e.g. postgres://user:password@host:5432/name.
_DEFAULT_DATABASE_URL = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
# The schemes of the database backends this project supports and tests.
_DATABASE_SCHEMES = ("postgres", "postgresql", "pgsql", "sqlite")
if IS_PRODUCTION:
    _DATABASE_URL = env_url("DATABASE_URL", None, _DATABASE_SCHEMES, required=True)
else:
    _DATABASE_URL = env_url("DATABASE_URL", _DEFAULT_DATABASE_URL, _DATABASE_SCHEMES)
try:
    DATABASES = {"default": dj_database_url.parse(_DATABASE_URL, conn_max_age=60 if IS_PRODUCTION else 0)}
except ValueError as error:
    raise ImproperlyConfigured(f"Environment variable DATABASE_URL cannot be read: {error}") from None

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the workers write to the same file. Wait up to
    # 30 s for its lock instead of failing at once, and take the write lock
    # at BEGIN, because a read lock upgraded later fails with "database is
    # locked" when another writer is active.
    # Write-ahead logging lets the upload requests read while a worker writes
    # a result, instead of waiting for its lock.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "classifier:upload"
LOGOUT_REDIRECT_URL = "classifier:upload"

# Static files are collected to STATIC_ROOT and served by WhiteNoise.
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]

# Uploaded files go through Django's storage API only. Setting
# STORAGE_BACKEND=storages.backends.s3.S3Storage (with django-storages
# installed and its AWS_* variables set) moves them to an object store that
# web and worker machines share.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STORAGES = {
    "default": {"BACKEND": env_str("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {
        "BACKEND": (
            "heritage_site.storage.StaticFilesStorage"
            if IS_PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Caches hold throttle counters, so production needs one shared cache
# (CACHE_URL=redis://...) or each gunicorn process counts on its own.
_CACHE_URL = env_url("CACHE_URL", "", ("redis", "rediss"))
if _CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Upload limits.
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 25 * 1024 * 1024, minimum=1)
UPLOAD_MAX_FILES = env_int("UPLOAD_MAX_FILES", 20, minimum=1)
IMAGE_MAX_PIXELS = env_int("IMAGE_MAX_PIXELS", 50_000_000, minimum=1)
# Pillow format names. MPO is how Pillow names the multi-picture JPEGs that
# many phones write; HEIF comes from pillow-heif, AVIF from Pillow itself.
_SUPPORTED_IMAGE_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")
IMAGE_ALLOWED_FORMATS = env_formats("IMAGE_ALLOWED_FORMATS", list(_SUPPORTED_IMAGE_FORMATS), _SUPPORTED_IMAGE_FORMATS)
# Maximum width and height of the EXIF-free copies served publicly, in pixels.
IMAGE_DISPLAY_MAX_SIDE = env_int("IMAGE_DISPLAY_MAX_SIDE", 1600, minimum=64)
IMAGE_THUMBNAIL_MAX_SIDE = env_int("IMAGE_THUMBNAIL_MAX_SIDE", 400, minimum=32)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES + 1

GALLERY_PAGE_SIZE = env_int("GALLERY_PAGE_SIZE", 24, minimum=1)
API_MAX_WAIT_SECONDS = 30

REST_FRAMEWORK = {
    # Token first: DRF takes the WWW-Authenticate header from the first class,
    # so a request without credentials gets 401 (log in) rather than 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "heritage_site.api.Pagination",
    "PAGE_SIZE": GALLERY_PAGE_SIZE,
    "EXCEPTION_HANDLER": "heritage_site.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "uploads_anon": env_rate("THROTTLE_ANON_UPLOADS", "30/hour"),
        "uploads_user": env_rate("THROTTLE_USER_UPLOADS", "600/hour"),
        "token_requests": env_rate("THROTTLE_TOKEN_REQUESTS", "10/minute"),
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Heritage Lens API",
    "DESCRIPTION": "Upload photos of buildings and get the architectural element each one shows.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"TrainingJobStatusEnum": "training_jobs.models.TrainingJob.Status"},
}

# Celery. CELERY_BROKER_URL=redis://host:6379/0 in production; the local
# default is kombu's filesystem transport, which needs no server. It ignores
# the host name, but without one kombu warns on every connection.
# Redis and the filesystem transport are the brokers this project tests.
_BROKER_SCHEMES = ("redis", "rediss", "filesystem")
CELERY_BROKER_URL = (
    env_url("CELERY_BROKER_URL", None, _BROKER_SCHEMES, required=True)
    if IS_PRODUCTION
    else env_url("CELERY_BROKER_URL", "filesystem://localhost/", _BROKER_SCHEMES)
)
BROKER_DIR = Path(env_str("CELERY_BROKER_DIR", str(VAR_DIR / "broker")))
INFERENCE_TASK_SOFT_TIME_LIMIT = env_int("INFERENCE_TASK_SOFT_TIME_LIMIT", 120, minimum=1)
INFERENCE_TASK_TIME_LIMIT = env_int("INFERENCE_TASK_TIME_LIMIT", 150, minimum=1)
# A claimed prediction whose worker has not finished it after this many
# seconds counts as abandoned (the worker died) and is queued again. It must
# exceed the hard time limit so that a live task is never run twice.
INFERENCE_CLAIM_TIMEOUT = env_int("INFERENCE_CLAIM_TIMEOUT", 300, minimum=1)
if INFERENCE_CLAIM_TIMEOUT <= INFERENCE_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("INFERENCE_CLAIM_TIMEOUT must be longer than INFERENCE_TASK_TIME_LIMIT.")
INFERENCE_BATCH_SIZE = env_int("INFERENCE_BATCH_SIZE", 16, minimum=1)
INFERENCE_DEVICE = env_device("INFERENCE_DEVICE", "auto")
# CPU threads per inference process; 0 keeps torch's default (one per core).
# Fewer threads avoid oversubscription when other processes share the cores.
INFERENCE_TORCH_THREADS = env_int("INFERENCE_TORCH_THREADS", 0, minimum=0)
# Seconds between sweeps that queue predictions left pending (broker down at
# upload time, worker lost mid-task).
INFERENCE_SWEEP_INTERVAL = env_float("INFERENCE_SWEEP_INTERVAL", 30.0, minimum=1.0)
# Visibility timeout of the Redis transport: a message not acknowledged after
# this many seconds is delivered again. Training tasks run for hours, so it is
# long; the sweep above recovers lost inference work much sooner.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 12 * 3600, minimum=60)

# Training jobs (training_jobs app). A job is stopped and marked failed after
# TRAINING_JOB_TIME_LIMIT seconds. A running job whose worker sent no
# heartbeat for TRAINING_JOB_STALE_AFTER seconds is marked failed as lost.
# Models are written under the media folder because the web process (downloads)
# and the inference workers (promoted models) read them from the same path.
# NOTE: this must be a local or shared filesystem path, even when uploads use
# an object store through STORAGE_BACKEND.
TRAINING_JOBS_ROOT = Path(env_str("TRAINING_JOBS_ROOT", str(MEDIA_ROOT / "training_jobs")))
TRAINING_JOB_TIME_LIMIT = env_int("TRAINING_JOB_TIME_LIMIT", 24 * 3600, minimum=60)
TRAINING_JOB_HEARTBEAT_INTERVAL = env_float("TRAINING_JOB_HEARTBEAT_INTERVAL", 10.0, minimum=0.1)
TRAINING_JOB_STALE_AFTER = env_float("TRAINING_JOB_STALE_AFTER", 120.0, minimum=1.0)
if TRAINING_JOB_STALE_AFTER <= 2 * TRAINING_JOB_HEARTBEAT_INTERVAL:
    raise ImproperlyConfigured("TRAINING_JOB_STALE_AFTER must be more than twice TRAINING_JOB_HEARTBEAT_INTERVAL.")
TRAINING_JOB_PROGRESS_INTERVAL = env_float("TRAINING_JOB_PROGRESS_INTERVAL", 2.0, minimum=0.0)
TRAINING_JOB_LOADER_WORKERS = env_int("TRAINING_JOB_LOADER_WORKERS", 1, minimum=0)
TRAINING_JOB_DEVICE = env_device("TRAINING_JOB_DEVICE", "auto")

# Address the login page gives visitors who want an account; empty leaves it out.
CONTACT_EMAIL = env_str("CONTACT_EMAIL", "")

# The classifier's default model: ml.DEFAULT_MODEL_DIR unless this is set.
DEFAULT_MODEL_DIR = env_str("DEFAULT_MODEL_DIR", "")

SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", IS_PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", IS_PRODUCTION)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), upper=True),
    },
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
