#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heritage_site.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as error:
        # The message of a bad environment variable names it, and a
        # traceback through the settings module would only bury that line.
        sys.exit(f"Configuration error: {error}")


if __name__ == "__main__":
    main()
