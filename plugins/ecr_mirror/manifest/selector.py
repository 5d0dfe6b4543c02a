"""An image's tag selector: exact tags, and a filter over the upstream tag list (docs/manifest.md)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ecr_mirror import patterns
from ecr_mirror.manifest.checks import Problem, StrictModel, invalid, quote_hint, raise_at
from ecr_mirror.refs import tag_problem
from ecr_mirror.versions import ANY_VARIANT, parse_range


class TagSelector(StrictModel):
    """Which upstream tags of an image to mirror (docs/manifest.md). A YAML list under `tags:` means
    `{exact: [...]}`.

    `exact` tags are always mirrored and need no upstream tag list. `semver`, `include` and `latest`
    select from the upstream tag list, in this order: semver -> include -> exclude -> latest N;
    `semver` and `latest` consider only releases of the `variant` (default: tags without one).
    """

    exact: list[str] = Field(default=[], description="tags mirrored as written, whatever the filters say")
    semver: str | None = Field(
        default=None, description="version range: npm style '^2.50 || ^3' or PEP 440 style '>=3.11,<3.14'"
    )
    include: list[str] = Field(
        default=[], description="regular expressions (re.search, anchor with ^ and $): keep tags matching one"
    )
    exclude: list[str] = Field(
        default=[], description="regular expressions (re.search): drop tags matching one"
    )
    latest: int | None = Field(
        default=None, ge=1, description="keep the tags of the N highest versions left by the other filters"
    )
    prerelease: bool = Field(default=False, description="let semver and latest select rc, beta, alpha, ...")
    variant: str | None = Field(
        default=None,
        description=(
            "the variant semver and latest select (the suffix after the version: alpine in 1.27.2-alpine): "
            "omitted, tags without one; a name or a regular expression matching the whole variant "
            "(alpine, 'alpine3\\.\\d+', 'slim-.*'); 'any' for every variant and none"
        ),
    )

    @field_validator("exact", mode="before")
    @classmethod
    def _check_types(cls, value: object) -> object:
        if isinstance(value, list):
            raise_at(
                "TagSelector",
                [
                    ((i,), f"a tag must be a string{quote_hint(tag)}", tag)
                    for i, tag in enumerate(value)
                    if quote_hint(tag)
                ],
            )
        return value

    @field_validator("exact")
    @classmethod
    def _check_tags(cls, value: list[str]) -> list[str]:
        problems: list[Problem] = []
        seen: set[str] = set()
        for i, tag in enumerate(value):
            if problem := tag_problem(tag):
                problems.append(((i,), problem, tag))
            elif tag in seen:
                problems.append(((i,), f"tag {tag!r} is listed twice", tag))
            seen.add(tag)
        raise_at("TagSelector", problems)
        return value

    @field_validator("semver", mode="before")
    @classmethod
    def _check_semver_type(cls, value: object) -> object:
        if hint := quote_hint(value):
            raise invalid(f"must be a string{hint}")
        return value

    @field_validator("semver")
    @classmethod
    def _check_semver(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_range(value)
            except ValueError as exc:
                raise invalid(str(exc)) from None
        return value

    @field_validator("include", "exclude")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        problems: list[Problem] = []
        for i, pattern in enumerate(value):
            try:
                patterns.compiled(pattern)
            except patterns.PatternError as exc:
                problems.append(((i,), f"{pattern!r} is not a valid regular expression: {exc}", pattern))
        raise_at("TagSelector", problems)
        return value

    @field_validator("variant")
    @classmethod
    def _check_variant(cls, value: str | None) -> str | None:
        if value is None or value == ANY_VARIANT:
            return value
        if not value:
            raise invalid("is empty: omit variant to select tags without one")
        try:
            patterns.compiled(value)
        except patterns.PatternError as exc:
            raise invalid(f"{value!r} is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _check_selects(self) -> TagSelector:
        problems: list[Problem] = []
        if not self.exact and not self.needs_listing:
            if self.exclude:
                message = (
                    "exclude alone would mirror every other upstream tag (thousands on Docker Hub): "
                    "add semver, include or latest to say what to mirror"
                )
                problems.append((("exclude",), message, self.exclude))
            else:
                message = "selects no tag: list exact tags, or give semver, include or latest"
                problems.append((("exact",), message, self.exact))
        for key in ("prerelease", "variant"):
            value = getattr(self, key)
            if value not in (None, False) and self.semver is None and self.latest is None:
                message = f"applies to semver and latest only: add one of them or remove {key}"
                problems.append(((key,), message, value))
        problems += self._excluded_exact_tags()
        raise_at("TagSelector", problems)
        return self

    def _excluded_exact_tags(self) -> list[Problem]:
        """Exact tags an exclude pattern drops too; a pattern that runs too long on one is refused."""
        problems: list[Problem] = []
        for i, tag in enumerate(self.exact):
            for j, pattern in enumerate(self.exclude):
                try:
                    if patterns.search(pattern, tag):
                        message = f"exact tag {tag!r} is also excluded by {pattern!r}: remove one of them"
                        problems.append((("exact", i), message, tag))
                        break
                except patterns.PatternTimeout as exc:
                    return [(("exclude", j), str(exc), pattern)]
        return problems

    @property
    def needs_listing(self) -> bool:
        """Whether resolving this selector needs the upstream tag list (anything beyond exact tags)."""
        return self.semver is not None or bool(self.include) or self.latest is not None

    def describe(self) -> str:
        """The filter part as the manifest writes it, e.g. "semver '^3', exclude ['rc'], latest 2"."""
        parts = [
            f"semver {self.semver!r}" if self.semver is not None else "",
            f"include {self.include}" if self.include else "",
            f"exclude {self.exclude}" if self.exclude else "",
            f"latest {self.latest}" if self.latest is not None else "",
            "prerelease true" if self.prerelease else "",
            f"variant {self.variant!r}" if self.variant is not None else "",
        ]
        return ", ".join(part for part in parts if part) or "exact tags only"
