"""A mirror DAG's documentation (its ``doc_md``): the manifest as a user reads it in the UI.

The DAG page shows what the DAG mirrors (schedule, SLA, notifications, rules, each image and its
selector), links to the audit view, and the manifest file itself with its sha256. Because the file's
text is part of the doc, and the doc part of the serialized DAG, any change to the manifest (a tag
added, a comment edited) changes the serialized DAG, and Airflow 3 records a new DAG version for
the runs after it (see docs/ui.md).
"""

from __future__ import annotations

from pathlib import Path

from ecr_mirror.manifest import ImageSpec, Manifest, Rule
from ecr_mirror.provenance import manifest_hash
from ecr_mirror.run_report import audit_path


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _selects(spec: ImageSpec) -> str:
    if spec.ref.digest and spec.ref.tag:
        return f"`{spec.ref.tag}` while it is `{spec.ref.digest}`"
    if spec.ref.digest:
        return f"digest `{spec.ref.digest}`"
    selector = spec.tags
    if selector is None:
        return "-"
    exact = ", ".join(f"`{tag}`" for tag in selector.exact)
    filters = selector.describe() if selector.needs_listing else ""
    return _cell(" + ".join(part for part in (filters, exact) if part) or "-")


def _settings(manifest: Manifest, index: int) -> str:
    spec = manifest.images[index]
    settings = manifest.image_settings(index)
    parts = [f"on_drift {settings.on_drift}"]
    if settings.platforms:
        parts.append("platforms " + ", ".join(settings.platforms))
    if settings.warm_layers:
        parts.append("warm layers")
    if spec.retries is not None:
        parts.append(f"retries {spec.retries}")
    return _cell(", ".join(parts))


def _rule_row(rule: Rule) -> str:
    upstream = rule.upstream + (f" ({rule.upstream_url})" if rule.upstream_url else "")
    secret = f"`{rule.credential_secret}`" if rule.credential_secret else "-"
    managed = "yes" if rule.manage else "no (checked only)"
    return f"| `{rule.prefix}` | {_cell(upstream)} | {secret} | {managed} |"


def _overview(manifest: Manifest) -> list[str]:
    target = manifest.target
    account = f"account {target.registry_id}, " if target.registry_id else ""
    sla = f"done within {manifest.sla.within} of queueing" if manifest.sla else "none"
    return [
        f"- **Target**: ECR {account}{target.region} (connection `{target.aws_conn_id}`)",
        f"- **Schedule**: `{manifest.schedule}`" if manifest.schedule else "- **Schedule**: trigger only",
        f"- **SLA**: {sla}",
        f"- **Owner**: {manifest.owner}",
        *(f"- **Notify**: {target.describe()}" for target in manifest.notify),
    ]


def dag_doc(manifest: Manifest, source: Path, text: str, audit_base: str) -> str:
    """The DAG's doc_md: ``text`` is the manifest file's content, ``audit_base`` where the audit
    view is mounted (run_notes.audit_link's base)."""
    dag_page = audit_path(audit_base, manifest.dag_id, "").rsplit("/runs/", 1)[0]
    lines = [
        f"# {manifest.name}",
        "",
        manifest.description or f"Mirrors the images of `{source.name}` into ECR through pull through cache.",
        "",
        *_overview(manifest),
        f"- **Audit**: [every tag of every run]({dag_page}) (the *Tag audit* tab)",
        "",
        "## Rules",
        "",
        "| prefix | upstream | credential secret | managed |",
        "|---|---|---|---|",
        *(_rule_row(rule) for rule in manifest.rules),
        "",
        "## Images",
        "",
        "| image | selects | settings |",
        "|---|---|---|",
        *(
            f"| `{spec.image}` | {_selects(spec)} | {_settings(manifest, i)} |"
            for i, spec in enumerate(manifest.images)
        ),
        "",
        f"## Manifest `{source}`",
        "",
        f"sha256 `{manifest_hash(text)}`",
        "",
        "```yaml",
        text.rstrip("\n").replace("```", "` ` `"),
        "```",
    ]
    return "\n".join(lines)
