"""``ecr-mirror probe``'s command line: options in, the report's table (and JSON file) out."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

#: the probe's default image (probe.DEFAULT_IMAGE, which the probe's own import would cost every
#: ecr-mirror command: a test keeps the two equal)
DEFAULT_IMAGE = "public.ecr.aws/docker/library/busybox:latest"


def _command(args: argparse.Namespace) -> int:
    from botocore.exceptions import ClientError

    from ecr_mirror.ecr import EcrTarget
    from ecr_mirror.probe import ProbeOptions, run_probe

    options = ProbeOptions(
        image=args.image,
        prefix=args.prefix,
        docker_hub_secret=args.docker_hub_secret,
        refresh_tag=args.refresh_tag,
        move_command=shlex.split(args.move_command) if args.move_command else None,
    )
    try:
        target = EcrTarget(args.aws_conn_id, args.region, args.registry_id)
        report = run_probe(target, options, Path(args.json_out) if args.json_out else None)
    except (ValueError, ClientError) as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 1
    print(f"ECR at {report.registry} ({report.region}), scratch prefix {report.prefix}")
    print(report.table())
    for problem in report.cleanup_problems:
        print(f"cleanup: {problem}", file=sys.stderr)
    if args.json_out:
        print(f"\nwritten to {args.json_out}; please share it (see docs/aws.md)")
    return 1 if report.cleanup_problems else 0


def register(commands: Any) -> None:
    """Add ``probe`` to the ``ecr-mirror`` subcommands."""
    probe = commands.add_parser(
        "probe",
        help="run harmless experiments on your ECR registry: which reading of the open points it follows",
    )
    probe.add_argument("--region", required=True)
    probe.add_argument("--aws-conn-id", default="aws_default", help="the Airflow AWS connection to use")
    probe.add_argument("--registry-id", help="the registry's account id (default: the connection's)")
    probe.add_argument(
        "--image", default=DEFAULT_IMAGE, help="a small public image:tag (ecr-public, quay or k8s)"
    )
    probe.add_argument(
        "--prefix", help="scratch prefix for the probe's rules (default ecr-mirror-probe-<hex>)"
    )
    probe.add_argument(
        "--docker-hub-secret", help="an ecr-pullthroughcache/ secret, for the Docker Hub experiment"
    )
    probe.add_argument("--refresh-tag", help="IMAGE:TAG upstream that --move-command moves to another image")
    probe.add_argument("--move-command", help="command that moves --refresh-tag upstream (run once)")
    probe.add_argument("--json-out", help="write the findings as JSON to this file")
    probe.set_defaults(func=_command)
