"""Every failed row says whether another try may cure it (``error_kind``; on a00658c the column
stayed empty): permanent failures through a real ``ecr-mirror sync``, and the classification of
the errors the libraries raise (httpx, botocore, the registry client)."""

from __future__ import annotations

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from ecr_mirror.audit import AuditStore
from ecr_mirror.cli import main
from ecr_mirror.failures import error_kind
from ecr_mirror.registry import AuthError, DigestMismatchError, NotFoundError, RegistryError
from ecr_mirror.states import ErrorKind
from sandbox.upstream import seed_image

HUB = "registry-1.docker.io"

MANIFEST = """\
name: kinds
target: {region: eu-west-1}
rules:
  - prefix: kinds
    upstream: docker-hub
    credential_secret: ecr-pullthroughcache/docker-hub
images:
  - image: acme/kinds
    tags: ["1", "no-such-tag"]
  - image: acme/kinds-arm
    tags: ["1"]
    platforms: [linux/s390x]
  - image: acme/kinds-none
    tags: {include: ["^9\\\\."]}
  - image: acme/kinds-twice
    tags: ["1"]
  - image: acme/kinds-twice
    tags: {include: ["^1$"]}
"""


@pytest.mark.slow
def test_permanent_failures_are_marked_permanent_and_good_rows_have_no_kind(sandbox, sandbox_env, capsys):
    hub = sandbox.upstreams[HUB]
    for name in ("kinds", "kinds-arm", "kinds-none", "kinds-twice"):
        seed_image(hub, f"acme/{name}", "1", platforms=() if name != "kinds-arm" else ("linux/amd64",))
    path = sandbox_env / "manifests" / "kinds.yaml"
    path.write_text(MANIFEST)

    assert main(["sync", str(path)]) == 1

    rows = AuditStore(f"sqlite:///{sandbox_env / 'audit.db'}").records(dag_id="ecr_mirror__kinds")
    kinds = {(r.image.rsplit("/", 1)[1], r.action, r.status, r.error_kind) for r in rows}
    assert kinds == {
        ("kinds", "missing", "pulled", None),
        ("kinds", "upstream_missing", "failed", "permanent"),  # not found upstream
        ("kinds-arm", "missing", "failed", "permanent"),  # the index lacks the platform
        ("kinds-none", "no_match", "failed", "permanent"),
        ("kinds-twice", "overlap", "failed", "permanent"),
    }


def registry_error(cls: type[RegistryError], status: int | None) -> RegistryError:
    return cls(f"HTTP {status}", registry="r", repository="a/b", reference="1", status=status)


def client_error(code: str, status: int) -> ClientError:
    response = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "DescribeImages")


def raised_from(cause: BaseException) -> RegistryError:
    try:
        raise cause
    except BaseException as exc:
        try:
            raise RegistryError("ConnectError after 5 attempt(s)", registry="r") from exc
        except RegistryError as wrapped:
            return wrapped


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (registry_error(RegistryError, 429), ErrorKind.TRANSIENT),
        (registry_error(RegistryError, 500), ErrorKind.TRANSIENT),
        (registry_error(RegistryError, 503), ErrorKind.TRANSIENT),
        (raised_from(httpx.ConnectError("reset")), ErrorKind.TRANSIENT),
        (httpx.ReadTimeout("stalled"), ErrorKind.TRANSIENT),
        (httpx.RemoteProtocolError("short body"), ErrorKind.TRANSIENT),
        (registry_error(DigestMismatchError, None), ErrorKind.TRANSIENT),
        (client_error("ThrottlingException", 400), ErrorKind.TRANSIENT),
        (client_error("ServiceUnavailableException", 503), ErrorKind.TRANSIENT),
        (EndpointConnectionError(endpoint_url="http://x"), ErrorKind.TRANSIENT),
        (ReadTimeoutError(endpoint_url="http://x"), ErrorKind.TRANSIENT),
        (registry_error(NotFoundError, 404), ErrorKind.PERMANENT),
        (registry_error(AuthError, 403), ErrorKind.PERMANENT),
        (client_error("AccessDeniedException", 400), ErrorKind.PERMANENT),
        (client_error("RepositoryNotFoundException", 400), ErrorKind.PERMANENT),
        (ValueError("a bug"), ErrorKind.PERMANENT),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_each_library_error_has_the_kind_a_retry_would_find(exc: BaseException, kind: ErrorKind) -> None:
    assert error_kind(exc) is kind
