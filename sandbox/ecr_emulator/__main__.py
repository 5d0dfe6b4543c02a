"""``python -m sandbox.ecr_emulator --port 4599 --state-dir DIR --upstream HOST=URL [--profile strict]``"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

import uvicorn

from .app import create_app, dated, serve_both
from .behaviour import DEFAULT_PROFILE, PROFILES, SWITCHES, Behaviour, BehaviourError
from .pullthrough import REFRESH_WINDOW, Settings


def parse_upstream(value: str) -> tuple[str, str]:
    host, sep, url = value.partition("=")
    if not sep or not host or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected HOST=http(s)://..., got {value!r}")
    return host, url


def blob_host_for(host: str) -> str:
    """Where the blob host listens by default: another loopback address than the registry's (so a
    client comparing host names without ports sees another host), else the same address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    return "127.0.0.2" if address == ipaddress.ip_address("127.0.0.1") else host


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.ecr_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4599, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--account", default="123456789012")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--upstream",
        type=parse_upstream,
        action="append",
        default=[],
        metavar="HOST=URL",
        help="serve the upstream registry HOST (as named in rules) from URL; userinfo = Basic credentials",
    )
    parser.add_argument("--refresh-window", type=float, default=REFRESH_WINDOW, help="seconds (default 24 h)")
    parser.add_argument(
        "--secrets-endpoint",
        metavar="URL",
        help="Secrets Manager endpoint (moto) where rule credentials (credentialArn) are read",
    )
    parser.add_argument(
        "--blob-host",
        help="address of the blob host listener (default: 127.0.0.2 when --host is 127.0.0.1, else --host)",
    )
    parser.add_argument("--blob-port", type=int, default=0, help="port of the blob host (default: any free)")
    parser.add_argument(
        "--blob-url",
        help="the blob host's URL as clients reach it (default http://<blob host>:<blob port>)",
    )
    behaviour = parser.add_argument_group(
        "behaviour", "what AWS leaves open (docs/emulator.md): a profile, then per-switch overrides"
    )
    behaviour.add_argument("--profile", choices=list(PROFILES), default=DEFAULT_PROFILE)
    for switch in SWITCHES:
        behaviour.add_argument(
            f"--{switch.name.replace('_', '-')}",
            dest=switch.name,
            choices=list(switch.variants),
            help=f"{switch.summary} (documented: {switch.documented}; strict: {switch.strict})",
        )
    behaviour.add_argument(
        "--fail-uncached-digest-pull",
        action="store_true",
        help="the same as --digest-first-pull not-found (containers-roadmap #2837)",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    overrides = {s.name: getattr(args, s.name) for s in SWITCHES if getattr(args, s.name) is not None}
    if args.fail_uncached_digest_pull:
        overrides.setdefault("digest_first_pull", "not-found")
    try:
        chosen = Behaviour.build(args.profile, overrides)
    except BehaviourError as exc:
        parser.error(str(exc))

    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    blob_sock = listen(args.blob_host or blob_host_for(args.host), args.blob_port)
    blob_address = blob_sock.getsockname()[:2]
    blob_url = args.blob_url or f"http://{blob_address[0]}:{blob_address[1]}"
    settings = Settings(
        upstreams=dict(args.upstream),
        refresh_window=args.refresh_window,
        secrets_endpoint=args.secrets_endpoint,
        behaviour=chosen,
    )
    app = create_app(args.state_dir, settings, account=args.account, region=args.region, blob_url=blob_url)
    # The first line on stdout tells process.py (and a person) where the server listens.
    print(f"ecr-emulator listening on http://{host}:{port}", flush=True)
    print(f"ecr-emulator blob host on {blob_url} (profile {chosen.profile})", flush=True)
    served = dated(serve_both(app, app.state.blob_host.app(), blob_address), app.state.clock)
    config = uvicorn.Config(
        served, log_level=args.log_level, access_log=False, lifespan="on", date_header=False
    )
    uvicorn.Server(config).run(sockets=[sock, blob_sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
