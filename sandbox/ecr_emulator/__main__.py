"""``python -m sandbox.ecr_emulator --port 4599 --state-dir DIR --upstream HOST=URL ...``"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

import uvicorn

from .app import create_app
from .pullthrough import REFRESH_WINDOW, Settings


def parse_upstream(value: str) -> tuple[str, str]:
    host, sep, url = value.partition("=")
    if not sep or not host or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected HOST=http(s)://..., got {value!r}")
    return host, url


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
        "--fail-uncached-digest-pull",
        action="store_true",
        help="reproduce containers-roadmap #2837: a first pull by digest of an uncached image fails",
    )
    parser.add_argument(
        "--secrets-endpoint",
        metavar="URL",
        help="Secrets Manager endpoint (moto) where rule credentials (credentialArn) are read",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    settings = Settings(
        upstreams=dict(args.upstream),
        refresh_window=args.refresh_window,
        fail_uncached_digest_pull=args.fail_uncached_digest_pull,
        secrets_endpoint=args.secrets_endpoint,
    )
    app = create_app(args.state_dir, settings, account=args.account, region=args.region)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]
    # The first line on stdout tells process.py (and a person) where the server listens.
    print(f"ecr-emulator listening on http://{host}:{port}", flush=True)
    config = uvicorn.Config(app, log_level=args.log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
