"""The shipped IAM policies parse and allow every ECR operation the code calls."""

from __future__ import annotations

import json
import re
from pathlib import Path

import botocore.session

ROOT = Path(__file__).resolve().parents[1]
IAM = ROOT / "docs" / "iam"
# boto3 calls on a client: client.describe_images(...), get_paginator("describe_images")
CALL = re.compile(r"""\.([a-z_]+)\(|get_paginator\("([a-z_]+)"\)""")
#: what the pull through cache needs beyond the calls in the code (registry login and data plane,
#: reference doc "IAM for the puller")
DATA_PLANE = {
    "GetAuthorizationToken",
    "BatchGetImage",
    "GetDownloadUrlForLayer",
    "BatchImportUpstreamImage",
    "CreateRepository",
}


def actions(name: str) -> set[str]:
    doc = json.loads((IAM / name).read_text())
    assert doc["Version"] == "2012-10-17"
    found: set[str] = set()
    for statement in doc["Statement"]:
        listed = statement["Action"]
        found.update([listed] if isinstance(listed, str) else listed)
    return found


def ecr_operations_called() -> set[str]:
    model = botocore.session.get_session().get_service_model("ecr")
    by_method = {botocore.xform_name(op): op for op in model.operation_names}
    called: set[str] = set()
    for path in (ROOT / "plugins" / "ecr_mirror").glob("*.py"):
        for method, paginated in CALL.findall(path.read_text()):
            if (name := method or paginated) in by_method:
                called.add(by_method[name])
    return called


def test_the_policies_allow_every_ecr_operation_the_code_calls():
    worker, admin = actions("worker-policy.json"), actions("rules-admin-policy.json")
    probe = actions("probe-policy.json")  # what `ecr-mirror probe` needs besides the other two
    called = ecr_operations_called()
    assert {"DescribeImages", "CreatePullThroughCacheRule", "BatchDeleteImage"} <= called
    missing = {f"ecr:{op}" for op in called} - worker - admin - probe
    assert not missing, f"no shipped policy allows {sorted(missing)}"
    assert {f"ecr:{op}" for op in DATA_PLANE} <= worker
    assert {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"} <= worker
    assert not any(
        a.startswith(("ecr:Create", "ecr:Update", "ecr:Delete")) and "Repository" not in a for a in worker
    )


def test_the_admin_may_hand_the_template_role_to_ecr_and_to_nothing_else():
    """A template with tags or KMS names a role (custom_role_arn); creating or updating it passes
    that role to ECR, which IAM allows only with iam:PassRole."""
    statements = json.loads((IAM / "rules-admin-policy.json").read_text())["Statement"]
    [passing] = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert passing["Resource"].startswith("arn:aws:iam::123456789012:role/")
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "ecr.amazonaws.com"}}
    assert "iam:PassRole" not in actions("worker-policy.json")
