# One image for the web process and both Celery workers; docker-compose.yml
# changes only the command. The default model ships inside ml/default_model.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=heritage_site.settings \
    MEDIA_ROOT=/data/media \
    HERITAGE_VAR_DIR=/data/var \
    STATIC_ROOT=/app/staticfiles

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install torch==2.14.1 torchvision==0.29.1 \
    && pip install -r requirements.txt

COPY . .
# collectstatic must run with the production storage (hashed names and a
# manifest); it reads no database and no real secret, so placeholders do.
RUN DJANGO_ENV=production SECRET_KEY=build-time-placeholder-not-used-at-run-time \
        ALLOWED_HOSTS=build DATABASE_URL=sqlite:////tmp/build.sqlite3 CELERY_BROKER_URL=memory:// \
        python manage.py collectstatic --noinput -v 0 \
    && useradd --create-home --uid 1000 heritage \
    && mkdir -p /data/media /data/var \
    && chown -R heritage:heritage /data
USER heritage

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD curl --fail --silent http://127.0.0.1:8000/healthz || exit 1
# Threads keep the site responding while upload requests with ?wait= poll.
CMD ["gunicorn", "heritage_site.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--timeout", "60", "--access-logfile", "-"]
