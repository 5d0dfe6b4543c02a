"""Credentials out of the AWS SDK's DEBUG logs.

At DEBUG, botocore logs every response body (``botocore.parsers``: "Response body: ..."), so a
Secrets Manager ``GetSecretValue`` (a rule's PTC credential) and an ECR ``GetAuthorizationToken``
would put the secret in the task log or the CLI's stderr before anyone could register it with
Airflow's secrets masker, which masks only values it already knows. A filter on that logger
keeps the first line of such a message and drops the body.
"""

from __future__ import annotations

import logging

#: response fields whose value is a credential (Secrets Manager, ECR)
SECRET_FIELDS = ("SecretString", "SecretBinary", "authorizationToken", "password", "accessToken")
#: the loggers that write response bodies
LOGGERS = ("botocore.parsers",)


def redact(text: str) -> str:
    """``text`` itself, or its first line and a note when it names a credential field: the body
    is a repr of JSON inside a repr, whose escaping is too layered to cut one value out safely."""
    found = [name for name in SECRET_FIELDS if name in text]
    if not found:
        return text
    first = text.split("\n", 1)[0]
    return f"{first} [redacted by ecr-mirror: the body carries {', '.join(found)}]"


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_FILTER = _Redact()


def install() -> None:
    """Put the filter on the loggers that write response bodies (once; calling again is harmless)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
