"""HTTP headers a registry answers with: auth challenges (RFC 7235), Docker Hub's rate-limit
headers, Retry-After and Date (RFC 9110)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx


@dataclass(frozen=True)
class RateLimit:
    """``ratelimit-limit`` / ``ratelimit-remaining`` as Docker Hub sends them (``76;w=21600``)."""

    limit: int | None
    remaining: int | None
    window_s: int | None


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case
    params: dict[str, str]  # keys lower case


# RFC 7235 challenges carry quoted strings that may contain commas and escaped quotes, and one
# header may hold several challenges; neither the stdlib nor httpx parses them, so a small
# tokenizer: a scheme token, then key=value pairs until the next bare token.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME_RE = re.compile(rf"[\s,]*({_TOKEN})")
_PARAM_RE = re.compile(rf"""[\s,]*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)""")


def parse_www_authenticate(value: str) -> list[Challenge]:
    challenges = []
    pos = 0
    while scheme := _SCHEME_RE.match(value, pos):
        pos = scheme.end()
        params = {}
        while param := _PARAM_RE.match(value, pos):
            key, raw = param.groups()
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            params[key.lower()] = raw
            pos = param.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges


def parse_rate_limit(headers: httpx.Headers) -> RateLimit | None:
    def split(value: str | None) -> tuple[int | None, int | None]:
        if not value:
            return None, None
        count, _, rest = value.partition(";")
        window = re.search(r"w=(\d+)", rest)
        return int(count) if count.strip().isdigit() else None, int(window.group(1)) if window else None

    limit, window = split(headers.get("ratelimit-limit"))
    remaining, window2 = split(headers.get("ratelimit-remaining"))
    if limit is None and remaining is None:
        return None
    return RateLimit(limit, remaining, window or window2)


def retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def response_date(headers: Mapping[str, str]) -> datetime | None:
    """An answer's ``Date`` (the server's clock), timezone-aware; None when absent or unreadable.
    ``headers``: httpx's (case-insensitive) or botocore's (lower-cased) header mapping."""
    value = headers.get("date") or headers.get("Date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
