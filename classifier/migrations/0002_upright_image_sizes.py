"""Swap width and height of images stored before sizes were taken from the upright photo.

Photos with an EXIF rotation of 90 or 270 degrees were recorded with the
sizes of their undecoded pixels. The display copy is always upright, so a
row whose orientation disagrees with its display copy is swapped.
"""

from django.core.files.storage import default_storage
from django.db import migrations
from django.db.models import F
from PIL import Image


def swap_rotated_sizes(apps, schema_editor):
    StoredImage = apps.get_model("classifier", "StoredImage")
    for stored in StoredImage.objects.exclude(width=F("height")).iterator():
        try:
            with default_storage.open(stored.display.name, "rb") as handle, Image.open(handle) as display:
                display_width, display_height = display.size
        except (OSError, ValueError):
            # A missing or unreadable display copy leaves the row as it was.
            continue
        if (display_width > display_height) != (stored.width > stored.height):
            StoredImage.objects.filter(pk=stored.pk).update(width=stored.height, height=stored.width)


class Migration(migrations.Migration):
    dependencies = [("classifier", "0001_initial")]

    operations = [migrations.RunPython(swap_rotated_sizes, migrations.RunPython.noop)]
