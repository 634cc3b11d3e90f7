"""Typed readers for settings that come from environment variables.

Each reader raises ``ImproperlyConfigured`` with the variable name and the
value it rejected, so a typo stops the process at start instead of running
with a silent default.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str:
    value = os.environ.get(name)
    if value is not None and value != "":
        return value

    if required or default is None:
        raise ImproperlyConfigured(f"Environment variable {name} is required but not set.")
    return default


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default

    normalized = value.strip().lower()
    if normalized in _TRUE:
        return True
    if normalized in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"Environment variable {name}={value!r} is not a boolean; use 1/0, true/false, yes/no or on/off."
    )


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default

    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"Environment variable {name}={value!r} is not an integer.") from None

    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"Environment variable {name}={number} is below the minimum {minimum}.")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default

    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"Environment variable {name}={value!r} is not a number.") from None

    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"Environment variable {name}={number} is below the minimum {minimum}.")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated list; blank items are dropped."""
    value = os.environ.get(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
    """Read one of `choices`. With `upper`, lower-case spellings are accepted too."""
    value = os.environ.get(name, default).strip()
    if upper:
        value = value.upper()
    if value not in choices:
        raise ImproperlyConfigured(
            f"Environment variable {name}={value!r} is invalid; expected one of: {', '.join(choices)}."
        )
    return value


def env_rate(name: str, default: str) -> str:
    """Read a DRF throttle rate such as ``30/hour`` and check its shape."""
    value = os.environ.get(name, default).strip()
    count, _, period = value.partition("/")
    if not count.isdigit() or period not in {"s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"}:
        raise ImproperlyConfigured(
            f"Environment variable {name}={value!r} is not a rate; use NUMBER/PERIOD, e.g. 30/hour."
        )
    return value


def env_url(name: str, default: str | None, schemes: tuple[str, ...], *, required: bool = False) -> str:
    """Read a URL and check that its scheme is one this setting supports.

    An empty default makes the setting optional: unset, it returns "" unchecked.
    """
    value = env_str(name, default, required=required)
    if value == "":
        return value
    scheme, separator, _ = value.partition("://")
    if not separator or scheme.lower() not in schemes:
        raise ImproperlyConfigured(
            f"Environment variable {name}={value!r} is not a supported URL. "
            f"It must start with one of: {', '.join(scheme + '://' for scheme in schemes)}."
        )
    return value


def env_device(name: str, default: str) -> str:
    """Read a torch device for the workers: auto, cpu, cuda or cuda:INDEX."""
    value = os.environ.get(name, default).strip().lower()
    kind, separator, index = value.partition(":")
    if kind in ("auto", "cpu", "cuda") and not separator:
        return value
    if kind == "cuda" and index.isdigit():
        return value
    raise ImproperlyConfigured(
        f"Environment variable {name}={value!r} is not a device. Use auto, cpu, cuda or cuda:INDEX (e.g. cuda:1)."
    )


def env_formats(name: str, default: list[str], supported: tuple[str, ...]) -> list[str]:
    """Read a comma-separated list of Pillow format names, each one of `supported`."""
    formats = [item.upper() for item in env_list(name, default)]
    unknown = [item for item in formats if item not in supported]
    if unknown:
        hint = " (JPEG is spelled JPEG)" if "JPG" in unknown else ""
        raise ImproperlyConfigured(
            f"Environment variable {name} has unknown image formats {', '.join(unknown)}{hint}. "
            f"Use Pillow format names from: {', '.join(supported)}."
        )
    if not formats:
        raise ImproperlyConfigured(f"Environment variable {name} is empty. List at least one image format.")
    return formats
