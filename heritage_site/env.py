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


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip()
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
    """Read a URL and check that its scheme is one this setting supports."""
    value = env_str(name, default, required=required)
    scheme, separator, _ = value.partition("://")
    if not separator or scheme.lower() not in schemes:
        raise ImproperlyConfigured(
            f"Environment variable {name}={value!r} is not a supported URL. "
            f"It must start with one of: {', '.join(scheme + '://' for scheme in schemes)}."
        )
    return value
