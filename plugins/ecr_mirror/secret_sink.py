"""Where every credential the engine reads or receives is handed, so that logs can mask it.

The engine imports nothing from Airflow: the sink is a no-op until the Airflow side
(dag_factory) sets Airflow's ``mask_secret`` with :func:`set_secret_sink`. Credentials handed
over: pull through cache secrets (Secrets Manager), ECR authorization tokens, registry bearer
tokens and Basic logins. A module of its own (not credentials.py) so that the registry client
can use it without importing the manifest model.
"""

from __future__ import annotations

from collections.abc import Callable


def _ignore(_value: str) -> None:
    pass


_sink: Callable[[str], None] = _ignore


def set_secret_sink(sink: Callable[[str], None]) -> None:
    """Send every credential the engine reads from now on to ``sink`` (e.g. Airflow's masker)."""
    global _sink
    _sink = sink


def register_secret(value: str | None) -> None:
    """Hand a credential to the sink (an empty value is not worth masking)."""
    if value:
        _sink(value)
