"""How the CLI prints: short digests, ``image:tag`` names, tables with a wrapped error column, JSON
and CSV on stdout. Shared by ``ecr-mirror plan|sync`` (cli) and ``ecr-mirror audit`` (cli_audit)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

#: the width the error column wraps at, so a table stays readable in a terminal
ERROR_WIDTH = 60


def short(digest: str | None) -> str:
    return digest[:19] if digest else "-"


def name(image: str, reference: str) -> str:
    """``image:tag``, or ``image@sha256:<12 hex>`` for a digest pin (the digest columns show more)."""
    return f"{image}@{short(reference)}" if reference.startswith("sha256:") else f"{image}:{reference}"


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], *, wrap_last: bool = True) -> str:
    """A plain-text table; the last column (the error) wraps at ERROR_WIDTH unless ``wrap_last`` is off."""
    from tabulate import tabulate  # imported on use: `validate` and `schema` never print a table

    if not wrap_last:
        return str(tabulate(rows, headers=headers))
    return str(tabulate(rows, headers=headers, maxcolwidths=[None] * (len(headers) - 1) + [ERROR_WIDTH]))


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def plain(value: Any) -> Any:
    """A value JSON and CSV can carry: datetimes as ISO 8601."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_json(rows: Sequence[dict[str, Any]]) -> None:
    print(json.dumps([{k: plain(v) for k, v in row.items()} for row in rows], indent=2))


def print_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, dict | list) else plain(v) for k, v in row.items()}
        )
