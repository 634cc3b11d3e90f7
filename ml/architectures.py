"""Names of the installed timm's architectures, readable without importing torch or timm.

The web process checks a training job's backbone against this list before it
queues the job, because importing timm there would load torch. Regenerate the
list after upgrading timm with ``python -m ml.architectures --write``; a test
fails while the list and the installed timm differ.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import sys
from pathlib import Path

ARCHITECTURES_FILE = Path(__file__).resolve().with_name("timm_architectures.txt")
_VERSION_PREFIX = "# timm "


@functools.cache
def _read_list() -> tuple[str, frozenset[str]]:
    lines = ARCHITECTURES_FILE.read_text(encoding="utf-8").splitlines()
    version = lines[0].removeprefix(_VERSION_PREFIX) if lines and lines[0].startswith(_VERSION_PREFIX) else "?"
    return version, frozenset(line.strip() for line in lines[1:] if line.strip())


def listed_timm_version() -> str:
    """Return the timm version the list was written from."""
    return _read_list()[0]


def known_architectures() -> frozenset[str]:
    """Return the architecture names of the list, as ``timm.list_models()`` gives them."""
    return _read_list()[1]


def is_known_architecture(name: str) -> bool:
    """Return whether timm can build ``name``, which may carry a pretrained tag such as ``resnet50.a1_in1k``."""
    return name.split(".", 1)[0] in known_architectures()


def unknown_architecture_message(name: str) -> str:
    """Return an error message for a backbone that is not a timm architecture, with the closest names."""
    matches = difflib.get_close_matches(name.split(".", 1)[0], sorted(known_architectures()), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(matches)}?" if matches else "timm.list_models() lists the names."
    return f"backbone {name!r} is not a timm {listed_timm_version()} architecture; {hint}"


def installed_architectures() -> tuple[str, list[str]]:
    """Return the installed timm's version and architecture names (imports timm, and so torch)."""
    import timm

    return timm.__version__, sorted(timm.list_models())


def write_list(path: Path = ARCHITECTURES_FILE) -> int:
    """Write the installed timm's architecture names to ``path`` and return how many there are."""
    version, names = installed_architectures()
    path.write_text(_VERSION_PREFIX + version + "\n" + "\n".join(names) + "\n", encoding="utf-8")
    _read_list.cache_clear()
    return len(names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check or rewrite the list of timm architecture names.")
    parser.add_argument("--write", action="store_true", help=f"rewrite {ARCHITECTURES_FILE.name} from installed timm")
    args = parser.parse_args(argv)
    if args.write:
        count = write_list()
        print(f"wrote {count} architecture names of timm {listed_timm_version()} to {ARCHITECTURES_FILE}")
        return 0
    version, names = installed_architectures()
    if version != listed_timm_version() or frozenset(names) != known_architectures():
        print(
            f"{ARCHITECTURES_FILE.name} lists timm {listed_timm_version()}, but timm {version} is installed; "
            "run python -m ml.architectures --write",
            file=sys.stderr,
        )
        return 1
    print(f"{ARCHITECTURES_FILE.name} matches the installed timm {version} ({len(names)} architectures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
