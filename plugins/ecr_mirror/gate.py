"""The signature gate in a run: before a tag is pulled through the cache, the cosign signature of
its upstream digest is read upstream and checked against the image's ``verify:`` (or its rule's).

A tag whose digest carries no signature the policy trusts is not pulled: it gets a ``failed`` row
whose error starts with the verdict (``unsigned``, ``bad signature``, ``untrusted certificate``,
``identity mismatch``). Such a refusal is permanent: retrying does not sign the image. A signature
that cannot be read (the upstream fails, not "not found") fails the tag too, and never passes the
gate. A verified tag is pulled as usual and its row names the signer.

What is verified is the digest the comparison found upstream (the index of a multi-arch image);
the pull then checks that ECR holds exactly that digest, so what reaches ECR is what was verified.
Tags that are not pulled (up to date, drift reported) are not checked: the gate guards what enters
the cache. Engine module: no Airflow imports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ecr_mirror.failures import error_kind
from ecr_mirror.manifest import Manifest, VerifySpec
from ecr_mirror.parallel import fair_map
from ecr_mirror.plan import PlanItem
from ecr_mirror.protocols import UpstreamRegistries
from ecr_mirror.pull_outcome import Outcome
from ecr_mirror.signatures import (
    KeylessIdentity,
    KeylessTrust,
    SignaturePolicy,
    TrustedKey,
    TrustMaterialError,
    verify_signature,
)
from ecr_mirror.states import Action, ErrorKind, Status

#: the prefix of a gate's failed row, so that `ecr-mirror audit` readers can filter on it
REFUSED = "signature gate"


def policy_of(spec: VerifySpec) -> SignaturePolicy:
    """The verifier's policy for a manifest's ``verify:`` (its files already resolved by the
    loader); TrustMaterialError naming a file that cannot be used."""
    keyless = None
    if spec.keyless is not None:
        keyless = KeylessTrust.from_files(
            [Path(p) for p in spec.keyless.fulcio],
            [Path(p) for p in spec.keyless.rekor],
            [KeylessIdentity(i.issuer, i.subject) for i in spec.keyless.identities],
        )
    return SignaturePolicy(keys=tuple(TrustedKey.from_file(Path(p)) for p in spec.keys), keyless=keyless)


def will_pull(item: PlanItem, force: bool) -> bool:
    """Whether the pull may bring this tag into the cache (what the gate must check first)."""
    if item.action is Action.MISSING:
        return True
    if item.action is Action.DRIFTED:
        return item.on_drift != "report"
    return item.action is Action.UP_TO_DATE and force


class SignatureGate:
    """Screens one batch: which planned tags may be pulled, and what the gate says of each."""

    def __init__(
        self,
        manifest: Manifest,
        upstreams: UpstreamRegistries,
        concurrency: int,
        slot: Callable[[int], AbstractContextManager[Any]],
    ) -> None:
        self.manifest = manifest
        self.upstreams = upstreams
        self.concurrency = concurrency
        self.slot = slot
        self._policies: dict[int, SignaturePolicy | TrustMaterialError] = {}
        self._lock = threading.Lock()

    def screen(self, plan: Sequence[PlanItem], force: bool) -> tuple[dict[int, Outcome], dict[int, str]]:
        """(refused: id(item) -> its failed outcome, verified: id(item) -> the note naming the
        signer). Items without a gate, or that will not be pulled, are in neither."""
        gated = [i for i in plan if will_pull(i, force) and self.manifest.image_verify(i.tag.image_index)]
        if not gated:
            return {}, {}
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(gated))) as pool:
            answers = fair_map(pool, self._check, gated, lambda i: i.tag.image_index)
        refused: dict[int, Outcome] = {}
        verified: dict[int, str] = {}
        for item, answer in zip(gated, answers, strict=True):
            if isinstance(answer, Outcome):
                refused[id(item)] = answer
            else:
                verified[id(item)] = answer
        return refused, verified

    def _policy(self, index: int) -> SignaturePolicy | TrustMaterialError:
        spec = self.manifest.image_verify(index)
        assert spec is not None  # only gated images are asked for
        with self._lock:
            if id(spec) not in self._policies:
                try:
                    self._policies[id(spec)] = policy_of(spec)
                except TrustMaterialError as exc:
                    self._policies[id(spec)] = exc
            return self._policies[id(spec)]

    def _check(self, item: PlanItem) -> Outcome | str:
        tag, digest = item.tag, item.upstream_digest
        policy = self._policy(tag.image_index)
        refuse = _refusal(item)
        if isinstance(policy, TrustMaterialError):
            return refuse(
                f"{REFUSED}: the trust material of {self.manifest.entry(tag.image_index)} "
                f"is unusable: {policy}"
            )
        if digest is None:
            return refuse(f"{REFUSED}: no upstream digest to verify for {tag.image}:{tag.reference}")
        try:
            with self.slot(tag.image_index):
                verdict = verify_signature(
                    self.upstreams.client(tag.registry), tag.repository, digest, policy, image=tag.image
                )
        except Exception as exc:  # the gate fails closed: a signature that cannot be read is no signature
            error = f"{REFUSED}: reading the signature of {tag.image}@{digest} failed: {exc}"
            return refuse(error, error_kind(exc))  # a 503 or a reset: a retry may read it
        if not verdict.verified:
            return refuse(
                f"{verdict.verdict}: {verdict.detail} ({tag.image}@{digest}); "
                f"not mirrored, the {REFUSED} refused it"
            )
        return f"{REFUSED}: signature verified, {verdict.detail} (signature {verdict.signature})"


def _refusal(item: PlanItem) -> Callable[..., Outcome]:
    """A refused tag's outcome: permanent (a bad or missing signature stays so) unless ``kind`` says
    otherwise."""

    def refuse(error: str, kind: ErrorKind = ErrorKind.PERMANENT) -> Outcome:
        return Outcome(item, Status.FAILED, item.cached_digest, error, item.platform_digests, error_kind=kind)

    return refuse
