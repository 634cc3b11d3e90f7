"""Upload every photo of a folder on the server, as a batch of site uploads."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import pluralize

from classifier import services
from classifier.imaging import ImageRejected
from heritage_site.commands import service_logs_shown


class Command(BaseCommand):
    help = (
        "Upload every file under FOLDER (subfolders included, hidden files skipped) as if a visitor had "
        "uploaded it, and queue its prediction. Each upload is named by its path inside FOLDER. Files that "
        "the same owner uploaded before under the same name (same bytes) are skipped and named, so an "
        "interrupted import can be run again."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder", help="Folder of photos on this server.")
        parser.add_argument("--owner", help="User name that owns the uploads, so they appear under My uploads.")
        parser.add_argument("--hide", action="store_true", help="Hide the imported photos from the public gallery.")

    def handle(self, *args, folder: str, owner: str | None, hide: bool, **options) -> None:
        root = Path(folder).expanduser().resolve()
        if not root.exists():
            raise CommandError(f"folder not found: {root}")
        if not root.is_dir():
            raise CommandError(f"{root} is a file, not a folder. Name the folder that contains the photos.")
        user = None
        if owner:
            user = get_user_model().objects.filter(username=owner).first()
            if user is None:
                raise CommandError(f"user {owner!r} not found. Create it in the admin first.")

        with service_logs_shown(show_info=options["verbosity"] >= 2):
            imported, already, rejected = self._import(root, user, hide)
        if not (imported or already or rejected):
            raise CommandError(f"no files found under {root} (hidden files and folders are skipped).")

        summary = (
            f"{imported} photo{pluralize(imported)} uploaded, {already} already uploaded and skipped, "
            f"{len(rejected)} rejected."
        )
        if imported:
            summary += " Their predictions are queued for the inference worker."
        self.stdout.write(summary)
        if rejected:
            raise CommandError(f"{len(rejected)} file{pluralize(len(rejected))} rejected, listed above.")

    def _import(self, root: Path, user, hide: bool) -> tuple[int, int, list[str]]:
        imported = already = 0
        rejected: list[str] = []
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if not path.is_file() or any(part.startswith(".") for part in relative.parts):
                continue
            try:
                upload, created = services.upload_import_file(
                    path=path, name=relative.as_posix(), owner=user, hidden=hide
                )
            except ImageRejected as error:
                rejected.append(relative.as_posix())
                self.stdout.write(self.style.WARNING(f"rejected {relative.as_posix()}: {error.message}"))
                continue
            if not created:
                already += 1
                self.stdout.write(f"skipped {relative.as_posix()}: already uploaded as photo {upload.pk}")
                continue
            imported += 1
            self.stdout.write(f"uploaded {relative.as_posix()} as photo {upload.pk}")
        return imported, already, rejected
