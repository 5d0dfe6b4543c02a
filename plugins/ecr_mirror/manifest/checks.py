"""Building blocks of the manifest's validation: errors located at a field, the patterns ECR and
AWS impose, and the field types shared by several sections (durations, platform lists).

A check raises a pydantic error located at the offending field, so ``Manifest.model_validate``
and the loader report the same things; the loader adds the file and the YAML line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError, WithJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

PTC_UNAVAILABLE_REGIONS = frozenset({"cn-north-1", "cn-northwest-1", "us-gov-east-1", "us-gov-west-1"})

REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]+$")
ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
# CreatePullThroughCacheRule's ecrRepositoryPrefix pattern, less the trailing "/" (refused apart)
_PREFIX_RE = re.compile(r"^(?:(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*|ROOT)$")
SNS_ARN_RE = re.compile(r"^arn:aws(?:-[a-z]+)*:sns:[a-z0-9-]+:[0-9]{12}:[\w-]{1,256}$")
SECRET_RE = re.compile(r"^ecr-pullthroughcache/[a-zA-Z0-9/_+=.@-]+$")
# A secret's ARN as the console shows it: Secrets Manager appends "-" and 6 random characters.
SECRET_ARN_RE = re.compile(
    r"^arn:aws(?:-[a-z]+)*:secretsmanager:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):secret:"
    r"(?P<name>ecr-pullthroughcache/[a-zA-Z0-9/_+=.@-]+)-[A-Za-z0-9]{6}$"
)
ROLE_ARN_RE = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::[0-9]{12}:role/[\w+=,.@/-]+$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")
_DURATION_RE = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")

Problem = tuple[tuple[str | int, ...], str, Any]
"""Where (a pydantic loc relative to the validating model), what, and the offending input."""


class StrictModel(BaseModel):
    """A manifest section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def invalid(message: str) -> PydanticCustomError:
    """A validation error with ``message`` as is."""
    # The message travels as context so that braces in user input are never taken as placeholders.
    return PydanticCustomError("manifest", "{reason}", {"reason": message})


def raise_at(title: str, problems: list[Problem]) -> None:
    """Raise one pydantic error per (loc, message, input); pydantic prefixes the caller's location."""
    if problems:
        raise ValidationError.from_exception_data(
            title,
            [InitErrorDetails(type=invalid(msg), loc=loc, input=value) for loc, msg, value in problems],
        )


#: pydantic error types that mean "not a mapping", and what the manifest calls each expected type
_MAPPING_ERRORS = frozenset({"model_type", "dict_type", "model_attributes_type"})
_TYPE_WORDS = {
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
}
_BOUND_WORDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "greater_than": ("gt", "must be more than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "less_than": ("lt", "must be less than {}"),
    "string_too_short": ("min_length", "must be at least {} characters long"),
    "string_too_long": ("max_length", "must be at most {} characters long"),
}


def manifest_words(kind: str, context: dict[str, Any], value: object, keys: Sequence[str]) -> str | None:
    """A pydantic error in the words of the manifest format, or None to keep pydantic's message.

    Pydantic names its classes ("a valid dictionary or instance of TagSelector"); a manifest
    author wrote YAML, so the message says what to write there. ``keys``: the keys of the section
    expected at that place (for a value that is not a mapping).
    """
    if kind in _MAPPING_ERRORS:
        return "must be a mapping" + (f" with keys such as {', '.join(keys)}" if keys else "")
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind] + quote_hint(value) if kind == "string_type" else _TYPE_WORDS[kind]
    if kind in ("literal_error", "enum") and "expected" in context:
        return f"must be one of {context['expected']}"
    if kind in _BOUND_WORDS:
        key, words = _BOUND_WORDS[kind]
        return words.format(context[key]) if key in context else None
    return None


def quote_hint(value: object) -> str:
    """YAML turns 3.10 into the float 3.1 and 012 into an int; tell the user to quote."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f" (YAML read {value!r} as a number: quote it)"
    return ""


def prefix_problem(value: str) -> str | None:
    """Why ``value`` is not an ECR repository prefix, or None."""
    if value.endswith("/"):
        return f"{value!r} must not end with '/': ECR always adds one"
    if not 2 <= len(value) <= 30 or not _PREFIX_RE.fullmatch(value):
        return (
            f"{value!r} does not match ECR's prefix pattern: 2-30 characters, lowercase path components "
            "of letters and digits separated by single '.', '_' or '-', joined by '/', or ROOT"
        )
    return None


def _parse_duration(value: object) -> object:
    """``45m``, ``2h``, ``1h30m``, ``1d``, ``90s`` or a number of seconds -> timedelta.

    Written here because pydantic's timedelta takes ISO 8601 (``PT45M``) and seconds, not the
    short form the manifest format uses.
    """
    if isinstance(value, bool):
        raise invalid("must be a duration such as 45m, 2h or 1h30m")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str) and value and (match := _DURATION_RE.fullmatch(value.strip())):
        parts = {key: int(number) for key, number in match.groupdict(default="0").items()}
        return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if isinstance(value, timedelta):
        return value
    raise invalid(f"{value!r} is not a duration such as 45m, 2h or 1h30m")


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise invalid("must be longer than zero")
    return value


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$", "examples": ["45m", "1h30m"]},
        {"type": "number", "description": "seconds"},
    ]
}
Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    AfterValidator(_positive),
    WithJsonSchema(_DURATION_SCHEMA),
]


def _check_platforms(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise invalid("lists no platform: omit platforms to mirror the whole index")
    problems: list[Problem] = []
    for i, platform in enumerate(value):
        if not _PLATFORM_RE.fullmatch(platform):
            problems.append(
                ((i,), f"{platform!r} is not os/architecture[/variant], e.g. linux/arm64/v8", platform)
            )
        elif platform in value[:i]:
            problems.append(((i,), f"{platform!r} is listed twice", platform))
    raise_at("platforms", problems)
    return value


Platforms = Annotated[list[str] | None, AfterValidator(_check_platforms)]
