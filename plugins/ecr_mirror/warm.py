"""Layer warming: each blob of the pulled images asked for once through ECR, and whether ECR holds it.

ECR keeps layers in its Amazon S3 bucket ``prod-<region>-starport-layer-bucket`` and answers a blob
GET with a redirect there; first pulls through a cache rule have been seen redirected to the
upstream's own storage instead, which a node without internet access cannot reach
(docs/ecr-facts.md, "What makes ECR import"). So a blob is asked for without following the
redirect: a redirect to ECR's bucket, or the bytes from ECR itself, means ECR holds it; a redirect
anywhere else means it does not yet. ECR then fetches the blob in the background, so after reading
it where it was sent, the blob is asked for again, a few times and a little later each time, until
ECR redirects to its own bucket. A redirect's target is read without the ECR credentials (S3
refuses a pre-signed request that carries them, and no other host may see them).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from ecr_mirror.protocols import RegistryEndpoint

#: seconds to wait before each new ask while ECR fetches a blob it redirected elsewhere
RECHECKS = (0.0, 1.0, 2.0, 4.0, 8.0)

# ECR's layer bucket, virtual-hosted (<bucket>.s3.<region>.amazonaws.com) or path-style (/<bucket>/...)
_BUCKET_RE = re.compile(r"^prod-[a-z0-9-]+-starport-layer-bucket$")


@dataclass(frozen=True)
class Warmed:
    """One blob asked for through ECR: the bytes read, and whether ECR holds the blob now."""

    size: int
    held: bool


def in_ecr_bucket(url: str) -> bool:
    """Whether a blob redirect leads to ECR's own layer bucket (ECR holds the blob)."""
    target = httpx.URL(url)
    first_segment = target.path.lstrip("/").split("/", 1)[0]
    return bool(_BUCKET_RE.match(target.host.split(".", 1)[0]) or _BUCKET_RE.match(first_segment))


def warm_blob(
    registry: RegistryEndpoint,
    repository: str,
    digest: str,
    *,
    rechecks: Sequence[float] = RECHECKS,
    sleep: Callable[[float], None] = time.sleep,
) -> Warmed:
    """Ask ECR for a blob, read it where ECR sends it, and tell whether ECR holds it now."""
    first = registry.blob_answer(repository, digest)
    if first.location is None:
        return Warmed(first.size or 0, True)
    size = registry.read_elsewhere(first.location)
    if in_ecr_bucket(first.location):
        return Warmed(size, True)
    for delay in rechecks:
        sleep(delay)
        again = registry.blob_answer(repository, digest, read=False)
        if again.location is None or in_ecr_bucket(again.location):
            return Warmed(size, True)
    return Warmed(size, False)
