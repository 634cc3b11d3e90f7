"""Write the photos staff have checked as a dataset folder, ready for training jobs."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from classifier import services as classifier_services
from heritage_site.commands import service_logs_shown
from training_jobs import services


class Command(BaseCommand):
    help = (
        "Write the display copies of the uploads whose element staff checked into FOLDER/train/<class>/ and "
        "FOLDER/test/<class>/, split per class with a seed. With --register the folder also becomes a dataset "
        "for training jobs."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder", help="New or empty folder on this server.")
        parser.add_argument(
            "--test-fraction",
            type=float,
            default=0.2,
            help="Share of each class for test/, above 0 and at most 0.9 (default 0.2). A class with two or more "
            "photos puts at least one in each split.",
        )
        parser.add_argument("--seed", type=int, default=0, help="Seed of the train/test split (default 0).")
        parser.add_argument("--include-hidden", action="store_true", help="Also export photos hidden from the gallery.")
        parser.add_argument(
            "--base-dataset",
            help="Dataset folder (train/<class>/, test/<class>/) whose images are linked in beside the checked "
            "photos, for example the AHE dataset.",
        )
        parser.add_argument("--register", action="store_true", help="Register the folder as a dataset afterwards.")

    def handle(self, *args, folder: str, register: bool, **options):
        try:
            with service_logs_shown(show_info=options["verbosity"] >= 2):
                result = classifier_services.checked_photos_export(
                    folder,
                    test_fraction=options["test_fraction"],
                    seed=options["seed"],
                    include_hidden=options["include_hidden"],
                    base_dataset=options["base_dataset"],
                )
        except classifier_services.CheckedExportError as error:
            raise CommandError(str(error)) from error

        counts = result["counts"]
        base = result["base_counts"]
        labels = sorted(set(counts["train"]) | set(base.get("train", {})))

        def total(split: str, label: str) -> int:
            return counts[split].get(label, 0) + base.get(split, {}).get(label, 0)

        self.stdout.write(f"Exported to {result['folder']}")
        header = f"{'class':<20} {'train':>7} {'test':>7}"
        self.stdout.write(header + (f" {'base train':>11} {'base test':>10}" if base else ""))
        for label in labels:
            row = f"{label:<20} {counts['train'].get(label, 0):>7} {counts['test'].get(label, 0):>7}"
            if base:
                row += f" {base['train'].get(label, 0):>11} {base['test'].get(label, 0):>10}"
            self.stdout.write(row)
        for message in result["skipped"]:
            self.stdout.write(self.style.WARNING(f"Skipped: {message}"))
        empty = sorted(label for label in labels if total("train", label) == 0)
        if empty:
            self.stdout.write(
                self.style.WARNING(
                    f"Classes with no image in train/: {', '.join(empty)}. Confirm the label of some of their photos first."
                )
            )
        no_test = sorted(label for label in labels if total("test", label) == 0 and label not in empty)
        if no_test:
            self.stdout.write(
                self.style.WARNING(
                    f"Classes with no image in test/: {', '.join(no_test)}. A class needs two checked photos "
                    "or more to have one in each split."
                )
            )
        extra = sorted(set(labels) - set(counts["train"]))
        if extra:
            self.stdout.write(
                self.style.WARNING(
                    f"Classes of the base dataset that the active model does not have: {', '.join(extra)}. "
                    "A model trained on this folder adds them."
                )
            )
        if not register:
            self.stdout.write(f"Register it with: .venv/bin/python manage.py import_dataset {result['folder']}")
            return

        try:
            with service_logs_shown(show_info=options["verbosity"] >= 2):
                dataset = services.dataset_register(path=result["folder"])
        except services.InvalidDataset as error:
            raise CommandError(str(error)) from error
        state = "ready for training jobs" if dataset.is_complete else "not ready: a class lacks images in one split"
        self.stdout.write(self.style.SUCCESS(f"Registered as dataset {dataset.pk} {dataset.name!r}, {state}."))
