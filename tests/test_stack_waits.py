"""The real-stack tests' wait: a probe that cannot reach the api-server is tried again until the
deadline, and a timeout names the last transport error."""

from __future__ import annotations

import httpx
import pytest

from tests.airflow_stack import wait_for


def test_a_probe_that_times_out_is_tried_again_until_it_answers():
    answers = [httpx.ReadTimeout("slow api-server"), httpx.ConnectError("refused"), None, "ready"]

    def probe() -> str | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for("the api-server", probe, timeout=30, every=0) == "ready"
    assert answers == []


def test_the_deadline_names_the_last_transport_error():
    def probe() -> None:
        raise httpx.ReadTimeout("slow api-server")

    named = r"waiting for the run \(last error: ReadTimeout: slow api-server\)"
    with pytest.raises(TimeoutError, match=named):
        wait_for("the run", probe, timeout=0, every=0)


def test_other_errors_are_not_swallowed():
    def probe() -> None:
        raise KeyError("state")

    with pytest.raises(KeyError):
        wait_for("the run", probe, timeout=30, every=0)
