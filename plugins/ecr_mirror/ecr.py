"""The ECR side: control plane calls and the registry endpoint, through the Amazon provider's hooks.

The Airflow connection (``aws_conn_id``) decides credentials, region and endpoint, so the same
code talks to real ECR or to the sandbox emulator (connection extra ``endpoint_url`` or
``service_config``).
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypedDict

from ecr_mirror.aws_errors import AwsError, aws_call, quiet_botocore
from ecr_mirror.registry import RegistryClient
from ecr_mirror.registry.headers import response_date
from ecr_mirror.secret_sink import register_secret
from ecr_mirror.settings import get_settings

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

log = logging.getLogger(__name__)

#: renew the registry login this long before ECR's 12 h token expires
_LOGIN_MARGIN = timedelta(minutes=15)


class ImageDetail(TypedDict, total=False):
    """The fields of a describe_images ``imageDetail`` the engine reads."""

    imageDigest: str
    imageTags: list[str]
    imagePushedAt: datetime
    lastRecordedPullTime: datetime


@dataclass(frozen=True)
class ImageTimes:
    """What ECR tells about an image's pulls, on ECR's own clock."""

    pushed_at: datetime | None  # when ECR cached the image
    last_recorded_pull: datetime | None  # lastRecordedPullTime: may lag by up to 24 h (API_ImageDetail)
    ecr_now: datetime  # the Date of ECR's answer


def server_time(headers: Mapping[str, str]) -> datetime:
    """ECR's clock: the ``Date`` of its answer; now on this machine when it sent none."""
    return response_date(headers) or datetime.now(UTC)


@dataclass
class CachedImages:
    """What one ECR repository holds: tag -> digest, and every digest (tagged or not)."""

    exists: bool
    tags: dict[str, str] = field(default_factory=dict)
    digests: set[str] = field(default_factory=set)

    def digest_for(self, reference: str) -> str | None:
        if reference.startswith("sha256:"):
            return reference if reference in self.digests else None
        return self.tags.get(reference)


@dataclass(frozen=True)
class Mutability:
    """A repository's ``imageTagMutability`` and its wildcard exclusion filters."""

    setting: str
    exclusions: tuple[str, ...] = ()

    def immutable(self, tag: str) -> bool:
        """Whether ``tag`` is immutable (API_ImageTagMutabilityExclusionFilter.html: ``*`` wildcards)."""
        excluded = any(fnmatch.fnmatchcase(tag, pattern) for pattern in self.exclusions)
        if self.setting == "IMMUTABLE":
            return True
        if self.setting == "IMMUTABLE_WITH_EXCLUSION":
            return not excluded
        return self.setting == "MUTABLE_WITH_EXCLUSION" and excluded


class EcrTarget:
    """One ECR registry (region + account) as seen through an Airflow AWS connection."""

    def __init__(self, aws_conn_id: str, region: str, registry_id: str | None = None) -> None:
        # Imported here so that importing this module does not need Airflow's configuration.
        from airflow.providers.amazon.aws.hooks.ecr import EcrHook

        self.registry_id = registry_id
        self.region = region
        self.aws_conn_id = aws_conn_id
        self._hook = EcrHook(aws_conn_id=aws_conn_id, region_name=region)
        self.client = self._hook.conn
        self._lock = threading.Lock()
        self._registry: RegistryClient | None = None
        self._registry_expires = datetime.min.replace(tzinfo=UTC)

    def _ids(self) -> dict[str, Any]:
        return {"registryId": self.registry_id} if self.registry_id else {}

    def cached_images(self, repository: str, *, tagged_only: bool = False) -> CachedImages:
        """Every image (or every tagged image) of a repository, one describe_images call per page."""
        paginator = self.client.get_paginator("describe_images")
        images = CachedImages(exists=True)
        request = {"repositoryName": repository, "maxResults": 1000, **self._ids()}
        if tagged_only:
            request["filter"] = {"tagStatus": "TAGGED"}
        try:
            with aws_call(f"repository '{repository}' in {self.region}"):
                for page in paginator.paginate(**request):
                    for detail in page.get("imageDetails", []):
                        images.digests.add(detail["imageDigest"])
                        for tag in detail.get("imageTags", []):
                            images.tags[tag] = detail["imageDigest"]
        except AwsError as exc:
            if exc.code == "RepositoryNotFoundException":
                return CachedImages(exists=False)
            raise
        return images

    def registry(self) -> RegistryClient:
        """A client for the registry endpoint, logged in with a fresh authorization token; it
        logs in again by itself when ECR refuses the token (expired: HTTP 403)."""
        with self._lock:
            now = datetime.now(UTC)
            if self._registry is None or now >= self._registry_expires - _LOGIN_MARGIN:
                if self._registry is not None:
                    self._registry.close()
                endpoint, login = self._login()
                # the endpoint's pull limits are ECR's, not Docker Hub's: no pull floor here
                options = {**get_settings().client_options(), "pull_floor": None}
                self._registry = RegistryClient(
                    endpoint, credentials=login, preemptive_basic=True, relogin=self._relogin, **options
                )
            return self._registry

    def _login(self) -> tuple[str, tuple[str, str]]:
        """GetAuthorizationToken through the provider's hook: the endpoint and its Basic login
        (the token is handed to the secret sink before anything else sees it)."""
        ids = [self.registry_id] if self.registry_id else None
        registry = f"the registry {self.registry_id or 'of the connection'} in {self.region}"
        with quiet_botocore(), aws_call(registry):
            login = self._hook.get_temporary_credentials(registry_ids=ids)[0]
        register_secret(login.password)
        expires = login.expires_at
        self._registry_expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        return login.proxy_endpoint, (login.username, login.password)

    def _relogin(self) -> tuple[str, str]:
        """A new login after ECR refused the current token (RegistryClient's ``relogin``)."""
        log.info("ECR refused the registry login (expired token?): logging in again")
        return self._login()[1]

    def close(self) -> None:
        with self._lock:
            if self._registry is not None:
                self._registry.close()
                self._registry = None

    @cached_property
    def secrets(self) -> SecretsManagerHook:
        """Secrets Manager in the target's region, through the same connection as ECR."""
        from airflow.providers.amazon.aws.hooks.secrets_manager import SecretsManagerHook

        return SecretsManagerHook(aws_conn_id=self.aws_conn_id, region_name=self.region)

    def read_secret(self, name: str) -> tuple[str, object]:
        """(ARN, JSON value) of a secret in the target's region; botocore's ClientError, or
        ValueError when the value is not JSON (see credentials.read_credentials)."""
        arn: str = self.secrets.conn.describe_secret(SecretId=name)["ARN"]
        with quiet_botocore():
            return arn, self.secrets.get_secret_as_dict(name)

    def mutability(self, repository: str) -> Mutability:
        """The repository's tag mutability (describe_repositories)."""
        with aws_call(f"repository '{repository}' in {self.region}"):
            answer = self.client.describe_repositories(repositoryNames=[repository], **self._ids())
        repo = answer["repositories"][0]
        filters = tuple(f["filter"] for f in repo.get("imageTagMutabilityExclusionFilters", []))
        return Mutability(repo.get("imageTagMutability", "MUTABLE"), filters)

    def image_times(self, repository: str, tag: str) -> ImageTimes:
        """describe_images of one tag: when ECR cached it and last recorded a pull of it, and the
        time of ECR's answer (the refresh timer runs on ECR's clock, see refresh.py)."""
        ids = [{"imageTag": tag}]
        with aws_call(f"{repository}:{tag} in {self.region}"):
            answer = self.client.describe_images(repositoryName=repository, imageIds=ids, **self._ids())
        detail: ImageDetail = answer["imageDetails"][0]
        return ImageTimes(
            detail.get("imagePushedAt"),
            detail.get("lastRecordedPullTime"),
            server_time(answer.get("ResponseMetadata", {}).get("HTTPHeaders", {})),
        )

    def delete_tag(self, repository: str, tag: str) -> None:
        """batch_delete_image of one tag; raises RuntimeError with ECR's failure reason."""
        with aws_call(f"{repository}:{tag} in {self.region}"):
            answer = self.client.batch_delete_image(
                repositoryName=repository, imageIds=[{"imageTag": tag}], **self._ids()
            )
        if failures := answer.get("failures"):
            reasons = "; ".join(f"{f.get('failureCode')}: {f.get('failureReason')}" for f in failures)
            raise RuntimeError(f"ECR did not delete {repository}:{tag}: {reasons}")
