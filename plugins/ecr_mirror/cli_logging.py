"""Where the CLI's logs go: every line to stderr (stdout is the command's result), quiet unless
``-v``, Airflow's logging pointed there too when a command imports it for a connection."""

from __future__ import annotations

import logging
import sys


def levels(verbosity: int) -> tuple[int, int]:
    """(level of other libraries' logs, level of ecr-mirror's own): quiet by default."""
    if verbosity >= 2:
        return logging.DEBUG, logging.DEBUG
    if verbosity == 1:
        return logging.INFO, logging.INFO
    return logging.ERROR, logging.WARNING


def configure_logging(verbosity: int) -> None:
    """Every log line to stderr, never stdout: stdout is the command's result."""
    others, own = levels(verbosity)
    root = logging.getLogger()
    if not root.handlers:  # a host that set up logging (a test runner) keeps its handlers
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(others)
    logging.getLogger("ecr_mirror").setLevel(own)


def load_airflow(verbosity: int) -> None:
    """Import Airflow for a connection, keeping its logs on stderr at the CLI's levels.

    Importing ``airflow`` runs ``settings.initialize()``, which configures logging to stdout at
    INFO (so ``plan --json | jq`` used to read the Amazon hook's log lines first). Airflow's own
    configuration is applied again with stderr as output: it keeps its secrets masking.
    """
    from contextlib import redirect_stdout

    with redirect_stdout(sys.stderr):
        import airflow  # noqa: F401  (its first import configures logging)
    from airflow.sdk.log import configure_logging as configure_airflow_logging

    others, own = levels(verbosity)
    # it is functools.cache'd: the unwrapped function applies the configuration again
    configure = getattr(configure_airflow_logging, "__wrapped__", configure_airflow_logging)
    configure(output=sys.stderr, log_level=logging.getLevelName(others), colored_console_log=False)
    root = logging.getLogger()
    root.setLevel(others)
    for handler in root.handlers:
        handler.setLevel(logging.NOTSET)
    logging.getLogger("ecr_mirror").setLevel(own)
