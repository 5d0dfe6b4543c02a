"""Run the emulator as a subprocess: ``start_emulator(state_dir, upstreams)`` -> EmulatorProcess."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class EmulatorProcess:
    url: str
    process: subprocess.Popen[str] = field(repr=False)
    state_dir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def admin(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call ``/_emulator/<path>``: GET, or POST with ``body``."""
        url = f"{self.url}/_emulator/{path}"
        response = httpx.get(url, timeout=10) if body is None else httpx.post(url, json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return self.admin("clock", {"advance_seconds": seconds})

    def stats(self) -> dict[str, int]:
        return self.admin("stats")

    def reset_stats(self) -> dict[str, int]:
        return self.admin("stats/reset", {})

    def behaviour(self) -> dict[str, Any]:
        """The variants in force: ``{"profile", "switches", "overrides", "profiles", "variants"}``."""
        return self.admin("behaviour")

    def set_behaviour(self, profile: str | None = None, **switches: str) -> dict[str, Any]:
        """Switch the running emulator: ``profile`` (default: the current one) with overrides."""
        body: dict[str, Any] = {"switches": switches}
        if profile is not None:
            body["profile"] = profile
        return self.admin("behaviour", body)

    def violations(self) -> list[dict[str, Any]]:
        """Problems the emulator found in its own ECR answers, and credentials sent to the blob host."""
        return self.admin("violations")["violations"]

    def blob_host(self) -> dict[str, Any]:
        """``{"url", "requests": [{"method", "path", "authorization", "status"}]}`` of the blob host."""
        return self.admin("blob-host")

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_emulator(
    state_dir: Path,
    upstreams: dict[str, str],
    port: int = 0,
    account: str = "123456789012",
    region: str = "us-east-1",
    *,
    secrets_endpoint: str | None = None,
    profile: str = "documented",
    behaviour: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
    timeout: float = 30.0,
) -> EmulatorProcess:
    """Start ``python -m sandbox.ecr_emulator`` and wait until it answers ``/_emulator/health``.

    ``secrets_endpoint``: a Secrets Manager endpoint (moto) from which rule credentials are read.
    ``profile`` and ``behaviour`` (switch -> variant overrides) choose how the emulator answers
    where AWS leaves it open (sandbox/ecr_emulator/behaviour.py).
    """
    switches = [
        arg for name, variant in (behaviour or {}).items() for arg in (f"--{name.replace('_', '-')}", variant)
    ]
    command = [
        sys.executable, "-m", "sandbox.ecr_emulator",
        "--host", "127.0.0.1", "--port", str(port), "--state-dir", str(state_dir),
        "--account", account, "--region", region, "--profile", profile, *switches,
        *(arg for host, url in upstreams.items() for arg in ("--upstream", f"{host}={url}")),
        *(("--secrets-endpoint", secrets_endpoint) if secrets_endpoint else ()),
        *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("ecr-emulator listening on "):
        process.kill()
        process.wait()
        raise RuntimeError(f"ECR emulator did not start (exit {process.poll()}): {line!r}")
    emulator = EmulatorProcess(url=line.rsplit(" ", 1)[-1], process=process, state_dir=state_dir)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{emulator.url}/_emulator/health", timeout=2).status_code == 200:
                return emulator
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            emulator.stop()
            raise RuntimeError(f"ECR emulator at {emulator.url} did not answer within {timeout}s")
        time.sleep(0.1)
