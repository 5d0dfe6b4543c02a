"""The registry client under a registry that misbehaves (tests/registry_faults.py, on loopback):
retries that retry, one backoff per host, the pull floor, the request deadline, token renewal.

Clients are made the way the engine makes them (upstream.Upstreams, from ECR_MIRROR_* settings),
so each test also proves the setting it names.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from ecr_mirror.registry import AuthError, RateLimitedError, RegistryClient, RegistryError
from ecr_mirror.settings import get_settings
from ecr_mirror.upstream import Upstreams
from tests.registry_faults import DIGEST, REPOSITORY, TAG, Fault, FaultyRegistry, faulty_registry

HOST = "hub.faulty.test"


@pytest.fixture
def registry() -> Iterator[FaultyRegistry]:
    with faulty_registry() as served:
        yield served


@pytest.fixture
def upstreams(registry: FaultyRegistry, monkeypatch: pytest.MonkeyPatch) -> Iterator[Upstreams]:
    """The engine's upstream clients, with HOST served by ``registry`` and quick backoffs."""
    monkeypatch.setenv("ECR_MIRROR_UPSTREAM_ENDPOINTS", json.dumps({HOST: registry.url}))
    monkeypatch.setenv("ECR_MIRROR_HTTP_BACKOFF_INITIAL", "0.2")
    monkeypatch.setenv("ECR_MIRROR_HTTP_TIMEOUT", "5")
    get_settings.cache_clear()
    with Upstreams() as made:
        yield made
    get_settings.cache_clear()


def gaps(registry: FaultyRegistry) -> list[float]:
    times = [seen.at for seen in registry.requests()]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_retry_after_zero_or_in_the_past_still_backs_off(
    registry: FaultyRegistry, upstreams: Upstreams
) -> None:
    past = formatdate(time.time() - 3600, usegmt=True)
    registry.faults = [
        Fault(429, {"Retry-After": "0"}),
        Fault(503, {"Retry-After": past}),
        Fault(429, {"Retry-After": "0"}),
    ]
    info = upstreams.client(HOST).head_manifest(REPOSITORY, TAG)
    assert info is not None and info.digest == DIGEST
    # backoff 0.2 s doubling, jittered down to half: at least 0.1, 0.2, 0.4 s (a00658c: 0.00 s each)
    assert [round(g, 2) >= floor for g, floor in zip(gaps(registry), (0.1, 0.2, 0.4), strict=True)] == [
        True
    ] * 3


def test_http_500_is_retried_like_502_503_504(registry: FaultyRegistry, upstreams: Upstreams) -> None:
    registry.faults = [Fault(500), Fault(502), Fault(504)]
    assert upstreams.client(HOST).get_manifest(REPOSITORY, TAG).digest == DIGEST
    assert len(registry.requests()) == 4  # a00658c: RegistryError "HTTP 500" after the first


def test_a_connection_reset_is_retried(registry: FaultyRegistry, upstreams: Upstreams) -> None:
    registry.faults = [Fault(reset=True), Fault(reset=True)]
    assert upstreams.client(HOST).get_manifest(REPOSITORY, TAG).digest == DIGEST
    assert len(registry.requests()) == 3


def test_a_host_that_says_wait_is_waited_on_by_every_thread_and_client(registry: FaultyRegistry) -> None:
    """One thread gets 429 Retry-After: 2; the requests other threads (and another client of the
    same host) make meanwhile wait for the same 2 s instead of each learning it alone."""
    registry.faults = [Fault(429, {"Retry-After": "2"})]
    first = RegistryClient(registry.url, backoff_initial=0.05, max_backoff=5)
    others = [first, first, RegistryClient(registry.url, backoff_initial=0.05, max_backoff=5)]
    told = threading.Thread(target=first.head_manifest, args=(REPOSITORY, TAG))
    told.start()
    while not registry.requests():
        time.sleep(0.01)
    time.sleep(0.2)  # the 429 has been answered
    rest = [threading.Thread(target=c.head_manifest, args=(REPOSITORY, TAG)) for c in others]
    for thread in rest:
        thread.start()
    for thread in [told, *rest]:
        thread.join(30)
    seen = registry.requests()
    assert len(seen) == 5  # the 429, its retry, and one request per other thread
    waited = [s.at - seen[0].at for s in seen[1:]]
    assert min(waited) >= 1.9, waited  # a00658c: the other threads' requests came at once
    for client in {*others}:
        client.close()


def test_a_pull_floor_defers_manifest_gets_while_head_checks_go_on(
    registry: FaultyRegistry, upstreams: Upstreams, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECR_MIRROR_PULL_FLOOR", "5")
    get_settings.cache_clear()
    registry.rate_limit_remaining = 5
    with Upstreams() as engine:
        client = engine.client(HOST)
        assert client.head_manifest(REPOSITORY, TAG) is not None
        assert client.rate_limit_remaining == 5
        with pytest.raises(RateLimitedError, match=r"deferred.*5 pulls left.*floor of 5") as error:
            client.get_manifest(REPOSITORY, TAG)
        assert f"{REPOSITORY}:{TAG}" in str(error.value)
        assert client.head_manifest(REPOSITORY, TAG) is not None  # HEADs do not count as pulls
        assert [s.method for s in registry.requests()] == ["HEAD", "HEAD"]  # no GET went out
        registry.rate_limit_remaining = 40  # the window moved on: a HEAD learns it, GETs resume
        client.head_manifest(REPOSITORY, TAG)
        assert client.get_manifest(REPOSITORY, TAG).digest == DIGEST


def test_a_trickled_body_ends_at_the_request_deadline(registry: FaultyRegistry, upstreams: Upstreams) -> None:
    """ECR_MIRROR_HTTP_TIMEOUT=5 bounds the whole request: a body sent at 1 byte/s (each read well
    within the read timeout) ends after about 5 s, once, instead of holding the worker ~60 s."""
    registry.faults = [Fault(trickle=60)]
    started = time.monotonic()
    with pytest.raises(RegistryError, match="no complete answer within 5 s") as error:
        upstreams.client(HOST).get_manifest(REPOSITORY, TAG)
    elapsed = time.monotonic() - started
    assert 4.5 <= elapsed < 8, elapsed  # a00658c: 60 s
    assert len(registry.requests()) == 1  # not retried: a trickling host would trickle again
    assert f"{REPOSITORY}:{TAG}" in str(error.value)


def test_fresh_tokens_refused_at_once_are_renewed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry that refuses the first two tokens it is shown (401 invalid_token, as when they
    expire at once): the client fetches a new token each time instead of failing the tag."""
    with faulty_registry(tokens=True, refuse_fresh=2) as registry, RegistryClient(registry.url) as client:
        info = client.head_manifest(REPOSITORY, TAG)
        assert info is not None and info.digest == DIGEST
        assert len(registry.issued) == 3  # a00658c: AuthError after the second token
        assert client.head_manifest(REPOSITORY, TAG) is not None
        assert len(registry.issued) == 3  # the accepted token is kept for its lifetime


def test_tokens_are_renewed_as_often_as_expires_in_says() -> None:
    with faulty_registry(tokens=True, token_lifetime=2) as registry, RegistryClient(registry.url) as client:
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            assert client.head_manifest(REPOSITORY, TAG) is not None
            time.sleep(0.1)
        # a 2 s token is kept 1 s (a margin of half its life): renewed about every second
        assert 3 <= len(registry.issued) <= 5, len(registry.issued)


def test_a_registry_that_refuses_every_token_fails_after_three_fresh_ones() -> None:
    with faulty_registry(tokens=True, refuse_fresh=100) as registry, RegistryClient(registry.url) as client:
        with pytest.raises(AuthError, match="access denied"):
            client.head_manifest(REPOSITORY, TAG)
        assert len(registry.issued) == 3  # bounded: AUTH_ROUNDS fresh tokens, then the refusal stands
