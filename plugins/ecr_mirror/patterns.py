"""Regular expressions written in manifests (tag include/exclude, variants), evaluated with a time bound.

A manifest's pattern such as ``(a+)+$`` backtracks catastrophically on a tag like ``aaaa...!``: with
the standard library's ``re`` one search over a 128-character tag never ends, cannot be interrupted
(it holds the GIL in C), and stops a DAG file or a task for good. The third-party ``regex``
package (https://pypi.org/project/regex/, maintained, a superset of ``re``'s syntax) takes a
``timeout`` per call and raises TimeoutError when it is spent, so a pattern is cut off with an
error that names it. google-re2 would bound the time by construction, but it refuses lookarounds
and backreferences (``^(?!.*-rc)``) that manifests valid today may use; ``regex`` keeps every
pattern ``re`` accepted working.
"""

from __future__ import annotations

from functools import lru_cache

import regex

from ecr_mirror.settings import get_settings

#: the syntax error a pattern that does not compile raises
PatternError = regex.error


class PatternTimeout(ValueError):
    """A manifest's pattern took longer than ``regex_timeout_seconds`` on one tag."""

    def __init__(self, pattern: str, text: str, seconds: float) -> None:
        super().__init__(
            f"pattern {pattern!r} took over {seconds:g} s on {text!r} (catastrophic backtracking?): "
            "rewrite it without nested repetition such as (a+)+ "
            "(limit: ECR_MIRROR_REGEX_TIMEOUT_SECONDS)"
        )
        self.pattern = pattern
        self.text = text


@lru_cache(maxsize=1024)
def compiled(pattern: str) -> regex.Pattern[str]:
    """The compiled pattern (PatternError when it is not a valid regular expression)."""
    return regex.compile(pattern)


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text`` (``re.search``), within the time bound."""
    return _bounded(pattern, text, whole=False)


def fullmatch(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches the whole of ``text`` (``re.fullmatch``), within the time bound."""
    return _bounded(pattern, text, whole=True)


def _bounded(pattern: str, text: str, *, whole: bool) -> bool:
    seconds = get_settings().regex_timeout_seconds
    compiled_pattern = compiled(pattern)
    try:
        if whole:
            return compiled_pattern.fullmatch(text, timeout=seconds) is not None
        return compiled_pattern.search(text, timeout=seconds) is not None
    except TimeoutError:
        raise PatternTimeout(pattern, text, seconds) from None
