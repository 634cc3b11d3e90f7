"""Register a dataset folder laid out as train/<class>/ and test/<class>/."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import pluralize

from training_jobs import services


class Command(BaseCommand):
    help = (
        "Scan a dataset folder (train/<class>/ and test/<class>/ with images) and register it for training jobs. "
        "Running it again on the same folder rescans it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="Dataset folder on this server.")
        parser.add_argument("--name", default="", help="Name shown in the admin (default: the folder name).")

    def handle(self, *args, path: str, name: str, **options) -> None:
        try:
            dataset = services.dataset_register(path=path, name=name)
        except services.InvalidDataset as error:
            raise CommandError(str(error)) from error

        self.stdout.write(f"Dataset {dataset.pk} {dataset.name!r}: {dataset.path}")
        self.stdout.write(f"{'class':<20} {'train':>7} {'test':>7}")
        for class_name in dataset.class_names:
            train = dataset.counts["train"].get(class_name, 0)
            test = dataset.counts["test"].get(class_name, 0)
            self.stdout.write(f"{class_name:<20} {train:>7} {test:>7}")
        self.stdout.write(f"{'total':<20} {dataset.train_images:>7} {dataset.test_images:>7}")

        for split, names in dataset.missing.items():
            if names:
                self.stdout.write(self.style.WARNING(f"Classes with no images in {split}/: {', '.join(names)}"))
        if dataset.unreadable:
            self.stdout.write(
                self.style.WARNING(f"{len(dataset.unreadable)} unreadable file{pluralize(len(dataset.unreadable))}:")
            )
            for relative_path in dataset.unreadable[:50]:
                self.stdout.write(f"  {relative_path}")
            if len(dataset.unreadable) > 50:
                self.stdout.write(f"  ... and {len(dataset.unreadable) - 50} more")
        if dataset.is_complete:
            self.stdout.write(self.style.SUCCESS("Ready for training jobs."))
        else:
            self.stdout.write(
                self.style.WARNING("Training jobs cannot use this dataset until every class has images in both splits.")
            )
