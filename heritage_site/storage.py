"""Static files storage for production: hashed names, compressed copies, served by WhiteNoise."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


def _without_source_maps(patterns):
    return tuple(
        (extension, tuple(pattern for pattern in rules if "sourceMappingURL" not in str(pattern)))
        for extension, rules in patterns
    )


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's manifest storage that leaves ``sourceMappingURL`` comments alone.

    Vendored minified libraries point at source maps that are not shipped.
    Rewriting those comments would make collectstatic fail on the missing
    ``.map`` files, and a browser requests them only with developer tools open.
    """

    patterns = _without_source_maps(CompressedManifestStaticFilesStorage.patterns)
