"""``ecr-mirror probe``: which reading of the open points of pull through cache real ECR follows.

AWS leaves several behaviours open (docs/ecr-facts.md, docs/emulator.md); the ECR emulator models
each as a switch with variants. The probe runs a few harmless experiments against the user's own
registry, under a scratch prefix it creates and removes (pull through cache rules, one creation
template, the repositories those create), and reports per switch the variant it observed, with
the evidence, or ``None`` when a run cannot tell. Its behaviour names are the emulator's switch
names, so a report maps straight onto a profile.

Engine module: nothing from Airflow at module level (``EcrTarget`` imports its hook when built).
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import ClientError
from tabulate import tabulate

from ecr_mirror.credentials import read_credentials
from ecr_mirror.ecr import EcrTarget
from ecr_mirror.refs import DEFAULT_UPSTREAM_URL, ImageRef, UpstreamKind, parse_image
from ecr_mirror.registry import MANIFEST_ACCEPT, RegistryError
from ecr_mirror.upstream import Upstreams

#: a small public image on an upstream that needs no credentials
DEFAULT_IMAGE = "public.ecr.aws/docker/library/busybox:latest"
NO_CREDENTIALS = frozenset({UpstreamKind.ECR_PUBLIC, UpstreamKind.QUAY, UpstreamKind.K8S})
UPSTREAM_AUTH_FAILED = "authentication to the upstream registry failed"
ECR_LAYER_BUCKET = "starport-layer-bucket"  # prod-<region>-starport-layer-bucket (vpc-endpoints.html)
#: every behaviour the probe reports, in the order it reports them (the emulator's switch names)
BEHAVIOURS = (
    "validate_unauthenticated",
    "digest_first_pull",
    "last_recorded_pull_time",
    "blob_delivery",
    "template_custom_role",
    "hub_missing_repository",
    "refresh_bound",
    "refresh_timer",
)


@dataclass
class Finding:
    behaviour: str
    variant: str | None  # None: this run cannot tell
    evidence: str


@dataclass
class ProbeOptions:
    image: str = DEFAULT_IMAGE
    prefix: str | None = None  # default: ecr-mirror-probe-<6 hex>
    docker_hub_secret: str | None = None  # an ecr-pullthroughcache/ secret for Docker Hub
    refresh_tag: str | None = None  # IMAGE:TAG that move_command moves upstream
    move_command: Sequence[str] | None = None
    pull_gap_s: float = 1.0  # between the two pulls that read lastRecordedPullTime


@dataclass
class ProbeReport:
    registry: str
    region: str
    prefix: str
    started_at: str
    findings: list[Finding] = field(default_factory=list)
    cleanup_problems: list[str] = field(default_factory=list)

    def variants(self) -> dict[str, str | None]:
        return {f.behaviour: f.variant for f in self.findings}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def table(self) -> str:
        rows = [[f.behaviour, f.variant or "not determinable", f.evidence] for f in self.findings]
        return tabulate(rows, headers=["behaviour", "variant", "evidence"], maxcolwidths=[None, None, 70])


class _Pull:
    """One registry-endpoint answer, as raw as the experiments need it."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.digest = response.headers.get("docker-content-digest")
        self.location = response.headers.get("location")
        self.body = response.content
        self.text = response.text if response.status_code >= 400 else ""


class Probe:
    """The experiments, against ``target`` (an :class:`EcrTarget`) and the upstreams as
    ``ECR_MIRROR_UPSTREAM_ENDPOINTS`` maps them."""

    def __init__(self, target: EcrTarget, options: ProbeOptions, upstreams: Upstreams | None = None) -> None:
        self.target = target
        self.client = target.client
        self.options = options
        self.image = parse_image(options.image)
        if self.image.kind not in NO_CREDENTIALS:
            raise ValueError(
                f"--image {options.image}: use an image of an upstream that needs no credentials "
                f"({', '.join(sorted(NO_CREDENTIALS))})"
            )
        self.tag = self.image.tag or "latest"
        self.prefix = options.prefix or f"ecr-mirror-probe-{secrets.token_hex(3)}"
        self.upstreams = upstreams or Upstreams()
        self._rules: list[str] = []
        self._templates: list[str] = []
        self._http = httpx.Client(timeout=60)
        self._login: tuple[str, tuple[str, str], float] | None = None

    # -- the registry endpoint ----------------------------------------------------------------

    def _ids(self) -> dict[str, Any]:
        return {"registryId": self.target.registry_id} if self.target.registry_id else {}

    def _endpoint(self) -> tuple[str, tuple[str, str]]:
        if self._login is None or self._login[2] < time.time() + 300:
            ids = [self.target.registry_id] if self.target.registry_id else None
            answer = self.client.get_authorization_token(**({"registryIds": ids} if ids else {}))
            data = answer["authorizationData"][0]
            user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
            expires = data["expiresAt"].timestamp()
            self._login = (data["proxyEndpoint"].rstrip("/"), (user, password), expires)
        return self._login[0], self._login[1]

    def _get(self, path: str, accept: str = MANIFEST_ACCEPT) -> _Pull:
        """GET on the registry endpoint, redirects not followed (the ECR credentials stay there)."""
        base, auth = self._endpoint()
        return _Pull(self._http.get(f"{base}/v2/{path}", auth=auth, headers={"Accept": accept}))

    def _repository(self, prefix: str, ref: ImageRef) -> str:
        return f"{prefix}/{ref.repository}"

    # -- setup and cleanup --------------------------------------------------------------------

    def _create_rule(self, prefix: str, kind: UpstreamKind, credential_arn: str | None = None) -> None:
        request = {
            "ecrRepositoryPrefix": prefix,
            "upstreamRegistryUrl": DEFAULT_UPSTREAM_URL[kind],
            "upstreamRegistry": str(kind),
            **({"credentialArn": credential_arn} if credential_arn else {}),
            **self._ids(),
        }
        self.client.create_pull_through_cache_rule(**request)
        self._rules.append(prefix)

    def cleanup(self) -> list[str]:
        """Delete what the probe created: repositories under its prefixes, its template and rules."""
        problems = []
        prefixes = tuple(f"{p}/" for p in self._rules + self._templates)
        try:
            pages = self.client.get_paginator("describe_repositories").paginate(**self._ids())
            names = [r["repositoryName"] for page in pages for r in page["repositories"]]
        except ClientError as exc:
            return [f"listing repositories: {exc}"]
        for name in names:
            if prefixes and name.startswith(prefixes):
                problems += self._quietly(
                    f"repository {name}",
                    partial(self.client.delete_repository, repositoryName=name, force=True, **self._ids()),
                )
        for prefix in self._templates:
            problems += self._quietly(
                f"template {prefix}",
                partial(self.client.delete_repository_creation_template, prefix=prefix),
            )
        for prefix in self._rules:
            problems += self._quietly(
                f"rule {prefix}",
                partial(
                    self.client.delete_pull_through_cache_rule, ecrRepositoryPrefix=prefix, **self._ids()
                ),
            )
        self._http.close()
        return problems

    @staticmethod
    def _quietly(what: str, call: Callable[[], object]) -> list[str]:
        try:
            call()
        except ClientError as exc:
            return [f"deleting {what}: {exc.response['Error'].get('Code')}"]
        return []

    # -- the experiments ----------------------------------------------------------------------

    def run(self) -> ProbeReport:
        base, _ = self._endpoint()
        report = ProbeReport(
            registry=base,
            region=self.target.region,
            prefix=self.prefix,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        try:
            self._create_rule(self.prefix, self.image.kind)
            steps: list[Callable[[], Finding]] = [
                self.validate_unauthenticated,
                self.digest_first_pull,
                self.last_recorded_pull_time,
                self.blob_delivery,
                self.template_custom_role,
                self.hub_missing_repository,
                self.refresh_bound,
                self.refresh_timer,
            ]
            for step in steps:
                try:
                    report.findings.append(step())
                except (ClientError, RegistryError, httpx.HTTPError, subprocess.SubprocessError) as exc:
                    name = step.__name__
                    report.findings.append(Finding(name, None, f"the experiment failed: {exc}"))
        finally:
            report.cleanup_problems = self.cleanup()
        return report

    def validate_unauthenticated(self) -> Finding:
        name = "validate_unauthenticated"
        try:
            answer = self.client.validate_pull_through_cache_rule(
                ecrRepositoryPrefix=self.prefix, **self._ids()
            )
        except ClientError as exc:
            error = exc.response["Error"]
            return Finding(name, "refuses", f"{error.get('Code')}: {error.get('Message')}")
        return Finding(name, "answers", f"isValid={answer.get('isValid')} for a {self.image.kind} rule")

    def _upstream_digest(self, ref: ImageRef, tag: str) -> str | None:
        info = self.upstreams.client(ref.registry).head_manifest(ref.repository, tag)
        return info.digest if info else None

    def digest_first_pull(self) -> Finding:
        name = "digest_first_pull"
        digest = self._upstream_digest(self.image, self.tag)
        if digest is None:
            return Finding(name, None, f"{self.image.with_tag(self.tag)} is not upstream")
        repository = self._repository(self.prefix, self.image)
        first = self._get(f"{repository}/manifests/{digest}")
        if first.status != 200:
            # cache the image by tag for the experiments that follow
            self._get(f"{repository}/manifests/{self.tag}")
        if first.status == 200:
            return Finding(name, "imports", f"GET {repository}@{digest[:19]} answered 200 on a first pull")
        if first.status == 404:
            return Finding(name, "not-found", f"GET {repository}@{digest[:19]} answered 404 on a first pull")
        return Finding(name, None, f"GET by digest answered {first.status}: {first.text[:200]}")

    def last_recorded_pull_time(self) -> Finding:
        name = "last_recorded_pull_time"
        repository = self._repository(self.prefix, self.image)

        def recorded() -> datetime | None:
            ids = [{"imageTag": self.tag}]
            details = self.client.describe_images(repositoryName=repository, imageIds=ids, **self._ids())
            when: datetime | None = details["imageDetails"][0].get("lastRecordedPullTime")
            return when

        self._get(f"{repository}/manifests/{self.tag}")
        first = recorded()
        time.sleep(self.options.pull_gap_s)
        self._get(f"{repository}/manifests/{self.tag}")
        second = recorded()
        if first is None or second is None:
            return Finding(
                name, None, f"lastRecordedPullTime not reported after two pulls ({first}, {second})"
            )
        if second > first:
            return Finding(name, "exact", f"moved from {first:%T.%f} to {second:%T.%f} with a second pull")
        return Finding(
            name,
            "lagging",
            f"stayed {first:%T.%f} after a second pull {self.options.pull_gap_s:g} s later",
        )

    def _layer(self, repository: str) -> str | None:
        """A layer of the probe image (of its first platform when the tag is an index)."""
        top = self._get(f"{repository}/manifests/{self.tag}")
        doc = json.loads(top.body) if top.status == 200 else {}
        if doc.get("manifests"):
            child = self._get(f"{repository}/manifests/{doc['manifests'][0]['digest']}")
            doc = json.loads(child.body) if child.status == 200 else {}
        layers = doc.get("layers") or []
        return layers[0]["digest"] if layers else None

    def blob_delivery(self) -> Finding:
        name = "blob_delivery"
        repository = self._repository(self.prefix, self.image)
        layer = self._layer(repository)
        if layer is None:
            return Finding(name, None, f"no layer found in {repository}:{self.tag}")
        first = self._get(f"{repository}/blobs/{layer}", accept="*/*")
        if first.status == 200:
            return Finding(name, "direct", f"the first GET of layer {layer[:19]} answered 200 with the bytes")
        if first.status not in (301, 302, 303, 307, 308) or not first.location:
            return Finding(name, None, f"the first GET of layer {layer[:19]} answered {first.status}")
        # follow without the ECR credentials, as S3 or the upstream's storage expects
        followed = self._http.get(first.location)
        ok = "bytes verified" if followed.status_code == 200 else f"HTTP {followed.status_code}"
        where = httpx.URL(first.location)
        if ECR_LAYER_BUCKET in str(where):
            return Finding(
                name, "presigned-redirect", f"{first.status} to ECR's layer bucket on {where.host} ({ok})"
            )
        second = self._get(f"{repository}/blobs/{layer}", accept="*/*")
        then = (
            "ECR's layer bucket" if second.location and ECR_LAYER_BUCKET in second.location else second.status
        )
        return Finding(
            name,
            "upstream-redirect-first-pull",
            f"{first.status} to {where.host} (not ECR's bucket, {ok}); the next GET: {then}",
        )

    def template_custom_role(self) -> Finding:
        name = "template_custom_role"
        prefix = f"{self.prefix}-t"
        tag = {"Key": "ecr-mirror-probe", "Value": "1"}
        try:
            self.client.create_repository_creation_template(
                prefix=prefix, appliedFor=["PULL_THROUGH_CACHE"], resourceTags=[tag]
            )
        except ClientError as exc:
            error = exc.response["Error"]
            return Finding(
                name, "refused", f"a template with resourceTags and no customRoleArn: {error.get('Code')}"
            )
        self._templates.append(prefix)
        self._create_rule(prefix, self.image.kind)
        repository = self._repository(prefix, self.image)
        pulled = self._get(f"{repository}/manifests/{self.tag}")
        if pulled.status != 200:
            return Finding(
                name, "pull-fails", f"the first pull through the template's rule answered {pulled.status}"
            )
        repo = self.client.describe_repositories(repositoryNames=[repository], **self._ids())["repositories"][
            0
        ]
        tags = self.client.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
        if tag in tags:
            return Finding(name, "applied", "the repository ECR created carries the template's tag")
        return Finding(name, "skipped", "the repository was created without the template's tag")

    def hub_missing_repository(self) -> Finding:
        name = "hub_missing_repository"
        if not self.options.docker_hub_secret:
            return Finding(name, None, "needs --docker-hub-secret (a Docker Hub rule needs a credential)")
        arn = read_credentials(self.target, self.options.docker_hub_secret, self.target.registry_id).arn
        prefix = f"{self.prefix}-h"
        self._create_rule(prefix, UpstreamKind.DOCKER_HUB, arn)
        missing = f"ecr-mirror-probe/no-such-repository-{secrets.token_hex(4)}"
        answer = self._get(f"{prefix}/{missing}/manifests/latest")
        if answer.status == 404:
            return Finding(name, "not-found", f"docker.io/{missing} answered 404")
        if answer.status == 403 and UPSTREAM_AUTH_FAILED in answer.text:
            return Finding(name, "auth-failed", f"docker.io/{missing} answered 403: {UPSTREAM_AUTH_FAILED}")
        return Finding(name, None, f"docker.io/{missing} answered {answer.status}: {answer.text[:200]}")

    def refresh_bound(self) -> Finding:
        name = "refresh_bound"
        if not (self.options.refresh_tag and self.options.move_command):
            return Finding(
                name, None, "needs --refresh-tag and --move-command (an upstream tag the probe may move)"
            )
        ref = parse_image(self.options.refresh_tag)
        if ref.tag is None or ref.kind not in NO_CREDENTIALS | {UpstreamKind.DOCKER_HUB}:
            return Finding(name, None, f"--refresh-tag {ref}: a tag of ecr-public, quay, k8s or Docker Hub")
        prefix = f"{self.prefix}-r"
        credential = None
        if ref.kind is UpstreamKind.DOCKER_HUB:
            if not self.options.docker_hub_secret:
                return Finding(name, None, "a Docker Hub --refresh-tag needs --docker-hub-secret")
            credential = read_credentials(
                self.target, self.options.docker_hub_secret, self.target.registry_id
            ).arn
        self._create_rule(prefix, ref.kind, credential)
        repository = self._repository(prefix, ref)
        before = self._get(f"{repository}/manifests/{ref.tag}")
        if before.status != 200:
            return Finding(name, None, f"the first pull of {ref} answered {before.status}")
        subprocess.run(list(self.options.move_command), check=True, timeout=600, capture_output=True)
        moved = self._upstream_digest(ref, ref.tag)
        if moved is None or moved == before.digest:
            return Finding(name, None, f"--move-command did not move {ref} upstream (still {before.digest})")
        after = self._get(f"{repository}/manifests/{ref.tag}")
        if after.digest == moved:
            return Finding(
                name, "at-least-once", "a pull right after the upstream moved served the new digest"
            )
        if after.digest == before.digest:
            return Finding(
                name, "up-to-once", "a pull right after the upstream moved still served the cached digest"
            )
        return Finding(name, None, f"the second pull answered {after.status} {after.digest}")

    def refresh_timer(self) -> Finding:
        return Finding(
            "refresh_timer",
            None,
            "needs pulls spread over more than 24 h (from the last check or the last pull); not in one run",
        )


def run_probe(target: EcrTarget, options: ProbeOptions, json_out: Path | None = None) -> ProbeReport:
    """Run every experiment, clean up, print nothing; write the report as JSON to ``json_out``."""
    report = Probe(target, options).run()
    if json_out is not None:
        json_out.write_text(report.to_json() + "\n", encoding="utf-8")
    return report
