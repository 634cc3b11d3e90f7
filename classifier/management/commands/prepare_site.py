"""Register the default model and make sure a staff account exists; used by `make run`."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from classifier import services

LOCAL_ADMIN_USERNAME = "admin"


class Command(BaseCommand):
    help = (
        "Register the committed default model as a model version, and create a superuser from "
        "DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD, or else a local staff account whose "
        "credentials are printed and kept in var/local-admin.txt."
    )

    def handle(self, *args, **options) -> None:
        active = services.model_version_ensure_default()
        if active is None:
            self.stdout.write(self.style.WARNING("No model is available yet: uploads stay pending until one is."))
        else:
            self.stdout.write(f"Active model: {active.version}")

        username = os.environ.get("DJANGO_SUPERUSER_USERNAME")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        if username and password:
            self._ensure_superuser(username, password)
            self.stdout.write(f"Staff login: {username} (password from DJANGO_SUPERUSER_PASSWORD)")
            return

        if settings.IS_PRODUCTION:
            # A generated password would end up in the container logs.
            self.stdout.write("No staff account created: set DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD.")
            return

        username, password = self._ensure_local_admin()
        self.stdout.write(f"Staff login: {username} / {password}")

    def _ensure_superuser(self, username: str, password: str) -> None:
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(
            username=username, defaults={"email": os.environ.get("DJANGO_SUPERUSER_EMAIL", "")}
        )
        # The environment is the source of truth: a changed password applies
        # at the next start.
        if not (user.is_staff and user.is_superuser and user.check_password(password)):
            user.is_staff = True
            user.is_superuser = True
            user.set_password(password)
            user.save()

    def _ensure_local_admin(self) -> tuple[str, str]:
        credentials_file = settings.VAR_DIR / "local-admin.txt"
        user_model = get_user_model()
        if credentials_file.is_file() and user_model.objects.filter(username=LOCAL_ADMIN_USERNAME).exists():
            username, _, password = credentials_file.read_text().strip().partition(" ")
            return username, password

        password = secrets.token_urlsafe(12)
        user, _ = user_model.objects.get_or_create(username=LOCAL_ADMIN_USERNAME)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()

        credentials_file.parent.mkdir(parents=True, exist_ok=True)
        credentials_file.write_text(f"{LOCAL_ADMIN_USERNAME} {password}\n")
        credentials_file.chmod(0o600)
        return LOCAL_ADMIN_USERNAME, password
