"""Helpers shared by the apps' management commands."""

import logging
from contextlib import contextmanager


@contextmanager
def service_logs_shown(show_info: bool, logger_names: tuple[str, ...] = ("classifier", "training_jobs")):
    """Raise the services' loggers to WARNING for the block unless show_info is set (-v 2).

    Commands print their own summary, which the services' INFO lines repeat.
    The loggers' levels are restored afterwards.
    """
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    if not show_info:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
