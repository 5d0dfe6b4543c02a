"""Persistent state: SQLite (stdlib) for metadata, content-addressed files for blobs.

One connection guarded by a re-entrant lock: every method is a short transaction, so the
store is safe to share between the server's worker threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rules (
    prefix TEXT PRIMARY KEY, upstream_registry TEXT NOT NULL, upstream_url TEXT NOT NULL,
    credential_arn TEXT, custom_role_arn TEXT, upstream_prefix TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS templates (prefix TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS repositories (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, artifact_media_type TEXT,
    size INTEGER NOT NULL, pushed_at REAL NOT NULL, last_pull REAL, manifest BLOB NOT NULL,
    pulled_at REAL, PRIMARY KEY (repo, digest));
CREATE INDEX IF NOT EXISTS images_by_push ON images (repo, pushed_at, digest);
CREATE TABLE IF NOT EXISTS tags (
    repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, last_checked REAL NOT NULL,
    PRIMARY KEY (repo, tag));
CREATE INDEX IF NOT EXISTS tags_by_digest ON tags (repo, digest);
CREATE TABLE IF NOT EXISTS refs (
    repo TEXT NOT NULL, image TEXT NOT NULL, target TEXT NOT NULL, kind TEXT NOT NULL,
    size INTEGER NOT NULL, PRIMARY KEY (repo, image, target));
CREATE TABLE IF NOT EXISTS tokens (token TEXT PRIMARY KEY, expires_at REAL NOT NULL);
"""


@dataclass
class Rule:
    prefix: str
    upstream_registry: str
    upstream_url: str
    credential_arn: str | None
    custom_role_arn: str | None
    upstream_prefix: str
    created_at: float
    updated_at: float


@dataclass
class Repository:
    """A repository; ``doc`` keeps the settings (mutability, encryption, tags, policies)."""

    name: str
    created_at: float
    mutability: str = "MUTABLE"
    mutability_filters: list[dict[str, str]] = field(default_factory=list)
    scan_on_push: bool = False
    encryption: dict[str, str] = field(default_factory=lambda: {"encryptionType": "AES256"})
    tags: list[dict[str, str]] = field(default_factory=list)
    repository_policy: str | None = None
    lifecycle_policy: str | None = None


@dataclass
class Image:
    """An image manifest in a repository. ``last_pull`` is what DescribeImages reports as
    lastRecordedPullTime; ``pulled_at`` is the exact time of the last manifest GET."""

    repo: str
    digest: str
    media_type: str
    artifact_media_type: str | None
    size: int
    pushed_at: float
    last_pull: float | None
    manifest: bytes
    pulled_at: float | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class Ref:
    """A descriptor an image manifest points at: ``kind`` is ``blob`` or ``manifest``."""

    target: str
    kind: str
    size: int


class Store:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.blob_dir = state_dir / "blobs" / "sha256"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(state_dir / "ecr.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate()
        self._db.executescript(SCHEMA)

    def _migrate(self) -> None:
        """State dirs written before ``images.pulled_at`` existed get the column."""
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(images)")}
        if columns and "pulled_at" not in columns:
            self._db.execute("ALTER TABLE images ADD COLUMN pulled_at REAL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # meta
    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", key)
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # pull through cache rules
    def rules(self) -> list[Rule]:
        return [Rule(**dict(row)) for row in self._rows("SELECT * FROM rules ORDER BY prefix")]

    def get_rule(self, prefix: str) -> Rule | None:
        rows = self._rows("SELECT * FROM rules WHERE prefix = ?", prefix)
        return Rule(**dict(rows[0])) if rows else None

    def put_rule(self, rule: Rule) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO rules VALUES (?, ?, ?, ?, ?, ?, ?, ?)", tuple(vars(rule).values())
            )

    def delete_rule(self, prefix: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM rules WHERE prefix = ?", (prefix,))

    # repository creation templates (kept as the API's own JSON document)
    def templates(self) -> list[dict[str, Any]]:
        return [json.loads(row["doc"]) for row in self._rows("SELECT doc FROM templates ORDER BY prefix")]

    def get_template(self, prefix: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT doc FROM templates WHERE prefix = ?", prefix)
        return json.loads(rows[0]["doc"]) if rows else None

    def put_template(self, doc: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO templates VALUES (?, ?)", (doc["prefix"], json.dumps(doc)))

    def delete_template(self, prefix: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM templates WHERE prefix = ?", (prefix,))

    # repositories
    def repositories(self) -> list[Repository]:
        return [
            Repository(**json.loads(row["doc"]))
            for row in self._rows("SELECT doc FROM repositories ORDER BY name")
        ]

    def get_repository(self, name: str) -> Repository | None:
        rows = self._rows("SELECT doc FROM repositories WHERE name = ?", name)
        return Repository(**json.loads(rows[0]["doc"])) if rows else None

    def put_repository(self, repo: Repository) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO repositories VALUES (?, ?)", (repo.name, json.dumps(vars(repo)))
            )

    def insert_repository(self, repo: Repository) -> bool:
        """Create ``repo`` unless it exists; True when this call created it."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO repositories VALUES (?, ?)", (repo.name, json.dumps(vars(repo)))
            )
            return cursor.rowcount == 1

    def delete_repository(self, name: str) -> None:
        with self.transaction() as db:
            for table, column in (
                ("tags", "repo"),
                ("refs", "repo"),
                ("images", "repo"),
                ("repositories", "name"),
            ):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))

    # images and tags
    def _image(self, row: sqlite3.Row) -> Image:
        image = Image(**dict(row))
        image.tags = [
            r["tag"]
            for r in self._rows(
                "SELECT tag FROM tags WHERE repo = ? AND digest = ? ORDER BY tag", image.repo, image.digest
            )
        ]
        return image

    def images(self, repo: str) -> list[Image]:
        rows = self._rows("SELECT * FROM images WHERE repo = ? ORDER BY pushed_at, digest", repo)
        return self._with_tags(repo, rows)

    def _with_tags(self, repo: str, rows: list[sqlite3.Row]) -> list[Image]:
        """Images of ``rows`` with their tags, read in one query (not one per image)."""
        images = [Image(**dict(row)) for row in rows]
        if not images:
            return images
        by_digest = {image.digest: image for image in images}
        marks = ",".join("?" * len(by_digest))
        for row in self._rows(
            f"SELECT digest, tag FROM tags WHERE repo = ? AND digest IN ({marks}) ORDER BY tag",
            repo,
            *by_digest,
        ):
            by_digest[row["digest"]].tags.append(row["tag"])
        return images

    def images_page(
        self, repo: str, after: tuple[float, str] | None, limit: int, tag_status: str = "ANY"
    ) -> tuple[list[Image], bool]:
        """Up to ``limit`` images after the (pushed_at, digest) key ``after``, in DescribeImages
        order, and whether more follow. Costs one page, not the whole repository."""
        where = ["repo = ?"]
        args: list[Any] = [repo]
        if after is not None:
            where.append("(pushed_at > ? OR (pushed_at = ? AND digest > ?))")
            args += [after[0], after[0], after[1]]
        if tag_status != "ANY":
            exists = "EXISTS (SELECT 1 FROM tags t WHERE t.repo = images.repo AND t.digest = images.digest)"
            where.append(exists if tag_status == "TAGGED" else f"NOT {exists}")
        rows = self._rows(
            f"SELECT * FROM images WHERE {' AND '.join(where)} ORDER BY pushed_at, digest LIMIT ?",
            *args,
            limit + 1,
        )
        return self._with_tags(repo, rows[:limit]), len(rows) > limit

    def image_by_tag(self, repo: str, tag: str) -> Image | None:
        found = self.get_tag(repo, tag)
        return self.get_image(repo, found[0]) if found else None

    def get_image(self, repo: str, digest: str) -> Image | None:
        rows = self._rows("SELECT * FROM images WHERE repo = ? AND digest = ?", repo, digest)
        return self._image(rows[0]) if rows else None

    def put_image(self, image: Image, refs: list[Ref]) -> None:
        """Store an image manifest (idempotent: an image already there keeps its push time)."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO images (repo, digest, media_type, artifact_media_type, size, "
                "pushed_at, last_pull, manifest, pulled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    image.repo,
                    image.digest,
                    image.media_type,
                    image.artifact_media_type,
                    image.size,
                    image.pushed_at,
                    image.last_pull,
                    image.manifest,
                    image.pulled_at,
                ),
            )
            db.executemany(
                "INSERT OR IGNORE INTO refs VALUES (?, ?, ?, ?, ?)",
                [(image.repo, image.digest, ref.target, ref.kind, ref.size) for ref in refs],
            )

    def delete_image(self, repo: str, digest: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM tags WHERE repo = ? AND digest = ?", (repo, digest))
            db.execute("DELETE FROM refs WHERE repo = ? AND image = ?", (repo, digest))
            db.execute("DELETE FROM images WHERE repo = ? AND digest = ?", (repo, digest))

    def record_pull(self, repo: str, digest: str, when: float, *, recorded: bool) -> None:
        """A manifest GET of an image at ``when``; ``recorded``: also what DescribeImages reports."""
        with self.transaction() as db:
            db.execute("UPDATE images SET pulled_at = ? WHERE repo = ? AND digest = ?", (when, repo, digest))
            if recorded:
                db.execute(
                    "UPDATE images SET last_pull = ? WHERE repo = ? AND digest = ?", (when, repo, digest)
                )

    def get_tag(self, repo: str, tag: str) -> tuple[str, float] | None:
        """The digest a tag points at and when it was last checked upstream."""
        rows = self._rows("SELECT digest, last_checked FROM tags WHERE repo = ? AND tag = ?", repo, tag)
        return (rows[0]["digest"], rows[0]["last_checked"]) if rows else None

    def set_tag(self, repo: str, tag: str, digest: str, checked: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?)", (repo, tag, digest, checked))

    def delete_tag(self, repo: str, tag: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM tags WHERE repo = ? AND tag = ?", (repo, tag))

    def tag_names(self, repo: str) -> list[str]:
        return [row["tag"] for row in self._rows("SELECT tag FROM tags WHERE repo = ? ORDER BY tag", repo)]

    def find_ref(self, repo: str, target: str) -> Ref | None:
        rows = self._rows(
            "SELECT target, kind, size FROM refs WHERE repo = ? AND target = ? LIMIT 1", repo, target
        )
        return Ref(**dict(rows[0])) if rows else None

    def parents(self, repo: str, digest: str) -> list[str]:
        """Index manifests of ``repo`` that list ``digest`` as a child."""
        rows = self._rows(
            "SELECT image FROM refs WHERE repo = ? AND target = ? AND kind = 'manifest'", repo, digest
        )
        return [row["image"] for row in rows]

    # registry tokens
    def add_token(self, token: str, expires_at: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO tokens VALUES (?, ?)", (token, expires_at))

    def token_expiry(self, token: str) -> float | None:
        rows = self._rows("SELECT expires_at FROM tokens WHERE token = ?", token)
        return rows[0]["expires_at"] if rows else None

    # blobs
    def blob_path(self, digest: str) -> Path:
        return self.blob_dir / digest.removeprefix("sha256:")

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def write_blob(self, digest: str, chunks: Iterator[bytes]) -> Path:
        """Write a blob from ``chunks``, verifying it against ``digest`` before it becomes visible."""
        target = self.blob_path(digest)
        temp = target.with_name(f"{target.name}.{threading.get_ident()}.part")
        hasher = hashlib.sha256()
        with temp.open("wb") as handle:
            for chunk in chunks:
                hasher.update(chunk)
                handle.write(chunk)
        if f"sha256:{hasher.hexdigest()}" != digest:
            temp.unlink()
            raise ValueError(f"blob content does not match {digest}")
        os.replace(temp, target)
        return target
