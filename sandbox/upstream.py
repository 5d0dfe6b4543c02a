"""Upstream registries for the sandbox and the tests.

Starts the real CNCF Distribution registry (Debian package ``docker-registry``) on loopback and
pushes deterministic synthetic images into it over the OCI distribution API, with no network
and no container runtime. The same inputs always produce the same bytes and so the same
digests; a different ``variant`` simulates an upstream re-push of a tag.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REGISTRY_BINARY = "docker-registry"
START_TIMEOUT_S = 15.0

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@dataclass(frozen=True)
class TokenAuthConfig:
    """Distribution's ``auth.token`` settings: tokens from ``realm`` signed by a key whose
    certificate is in ``rootcertbundle``, with ``iss == issuer`` and ``aud == service``."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


@dataclass
class RegistryProcess:
    """A running ``docker-registry serve`` process; ``stop()`` ends it."""

    url: str
    root: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path = field(repr=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> RegistryProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _htpasswd_file(path: Path, users: dict[str, str]) -> None:
    """Write bcrypt entries (Distribution accepts only bcrypt) with Apache's ``htpasswd``."""
    binary = shutil.which("htpasswd")
    if binary is None:
        raise RuntimeError("htpasswd not found: install the apache2-utils package")
    lines = []
    for user, password in users.items():
        out = subprocess.run(
            [binary, "-Bbn", user, password], check=True, capture_output=True, text=True
        ).stdout
        lines.append(out.strip())
    path.write_text("\n".join(lines) + "\n")


def _config(root: Path, port: int, htpasswd: dict[str, str] | None, token: TokenAuthConfig | None) -> dict:
    if htpasswd and token:
        raise ValueError("choose htpasswd or token auth, not both")
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "ecr-mirror-sandbox"},
    }
    if htpasswd:
        path = root / "htpasswd"
        _htpasswd_file(path, htpasswd)
        config["auth"] = {"htpasswd": {"realm": "ecr-mirror-sandbox", "path": str(path)}}
    elif token:
        config["auth"] = {
            "token": {
                "realm": token.realm,
                "service": token.service,
                "issuer": token.issuer,
                "rootcertbundle": str(token.rootcertbundle),
            }
        }
    return config


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_registry(
    root: Path,
    port: int = 0,
    *,
    htpasswd: dict[str, str] | None = None,
    token: TokenAuthConfig | None = None,
) -> RegistryProcess:
    """Start Distribution on 127.0.0.1 with its storage under ``root``; wait until ``/v2/`` answers.

    Several processes may share one ``root`` one after another (e.g. seed anonymously, then
    restart with token auth over the same data).
    """
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        raise RuntimeError("docker-registry not found: install the Debian package docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    if port and not _port_free(port):
        # Checked first: otherwise whatever already listens there would answer the readiness probe.
        raise RuntimeError(f"registry did not start: 127.0.0.1:{port} is already in use")
    port = port or free_port()
    config_path = root / "config.yml"
    config_path.write_text(yaml.safe_dump(_config(root, port, htpasswd, token), sort_keys=False))
    log_path = root / "registry.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    registry = RegistryProcess(f"http://127.0.0.1:{port}", root, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                if client.get(f"{registry.url}/v2/").status_code in (200, 401):
                    return registry
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    registry.stop()
    raise RuntimeError(f"registry at {registry.url} did not start:\n{registry.log_tail()}")


@dataclass
class SeededImage:
    """What ``seed_image`` pushed: the top manifest and everything under it."""

    repository: str
    tag: str
    digest: str
    media_type: str
    children: dict[str, str]  # "linux/amd64" -> child manifest digest ({} for single-platform)
    blobs: list[str]  # every blob digest (configs + layers)

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _platform(spec: str) -> dict[str, str]:
    parts = spec.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"platform must be os/arch[/variant], got {spec!r}")
    platform = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        platform["variant"] = parts[2]
    return platform


def _layer(repository: str, tag: str, platform: str, variant: str) -> tuple[bytes, bytes]:
    """(uncompressed tar, gzip) of one small file; fixed metadata and gzip mtime=0 keep bytes stable."""
    content = f"repository={repository}\ntag={tag}\nplatform={platform}\nvariant={variant}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("etc/ecr-mirror-seed")
        info.size, info.mtime, info.mode = len(content), 0, 0o644
        tar.addfile(info, io.BytesIO(content))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, compresslevel=6, mtime=0)


class _Pusher:
    """Minimal push side of the distribution API (only what seeding needs)."""

    def __init__(self, client: httpx.Client, base: str, repository: str) -> None:
        self.client, self.base, self.repository = client, base.rstrip("/"), repository

    def blob(self, data: bytes) -> str:
        digest = _digest(data)
        blob_url = f"{self.base}/v2/{self.repository}/blobs/{digest}"
        if self.client.head(blob_url).status_code == 200:
            return digest
        started = self.client.post(f"{self.base}/v2/{self.repository}/blobs/uploads/")
        started.raise_for_status()
        location = httpx.URL(self.base).join(started.headers["Location"])
        done = self.client.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        done.raise_for_status()
        return digest

    def manifest(self, reference: str, body: bytes, media_type: str) -> None:
        response = self.client.put(
            f"{self.base}/v2/{self.repository}/manifests/{reference}",
            content=body,
            headers={"Content-Type": media_type},
        )
        if response.status_code >= 400:
            raise RuntimeError(
                f"pushing manifest {self.repository}:{reference} failed: "
                f"{response.status_code} {response.text[:500]}"
            )


def seed_image(
    registry_url: str,
    repository: str,
    tag: str,
    *,
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    oci: bool = True,
    variant: str = "",
    auth: tuple[str, str] | None = None,
) -> SeededImage:
    """Push a deterministic image to ``registry_url`` as ``repository:tag`` and describe it.

    ``platforms`` non-empty -> an index (OCI image index, or Docker manifest list when
    ``oci=False``) over one image per platform; ``platforms=()`` -> a single linux/amd64 image
    manifest under the tag. ``auth`` is Basic credentials (htpasswd registries).
    """
    manifest_type, config_type, layer_type, index_type = (
        (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, OCI_INDEX)
        if oci
        else (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST)
    )
    blobs: list[str] = []
    children: dict[str, str] = {}
    index_entries: list[dict] = []
    with httpx.Client(auth=auth, timeout=30.0) as client:
        push = _Pusher(client, registry_url, repository)
        for spec in platforms or ("linux/amd64",):
            platform = _platform(spec)
            raw, compressed = _layer(repository, tag, spec, variant)
            config = _canonical(
                {
                    **platform,
                    "created": "1970-01-01T00:00:00Z",
                    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
                    "rootfs": {"type": "layers", "diff_ids": [_digest(raw)]},
                    "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "ecr-mirror seed"}],
                }
            )
            config_digest = push.blob(config)
            layer_digest = push.blob(compressed)
            blobs += [config_digest, layer_digest]
            manifest = _canonical(
                {
                    "schemaVersion": 2,
                    "mediaType": manifest_type,
                    "config": {"mediaType": config_type, "size": len(config), "digest": config_digest},
                    "layers": [{"mediaType": layer_type, "size": len(compressed), "digest": layer_digest}],
                }
            )
            manifest_digest = _digest(manifest)
            if not platforms:
                push.manifest(tag, manifest, manifest_type)
                return SeededImage(repository, tag, manifest_digest, manifest_type, {}, blobs)
            push.manifest(manifest_digest, manifest, manifest_type)
            children[spec] = manifest_digest
            index_entries.append(
                {
                    "mediaType": manifest_type,
                    "size": len(manifest),
                    "digest": manifest_digest,
                    "platform": platform,
                }
            )
        index = _canonical({"schemaVersion": 2, "mediaType": index_type, "manifests": index_entries})
        index_digest = _digest(index)
        push.manifest(index_digest, index, index_type)
        push.manifest(tag, index, index_type)
    return SeededImage(repository, tag, index_digest, index_type, children, blobs)
