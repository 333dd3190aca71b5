"""Secrets a deployment keeps out of its environment: SSM Parameter Store or Secrets Manager.

A setting that holds a secret (``DATABASE_URL``, ``SUPABASE_JWT_SECRET``) takes either the value
itself (local development, tests) or a *reference* to where the value is kept:

- ``ssm:<parameter name>`` — a ``SecureString`` parameter, e.g. ``ssm:/capandex/database-url``
  (the template's choice: free at standard throughput, encrypted under the stack's KMS key);
- ``secretsmanager:<secret name or ARN>`` — the ``SecretString`` of a Secrets Manager secret.

A reference is resolved at first use, not at import, through Powertools' parameters utility,
which caches each value for ``POWERTOOLS_PARAMETERS_MAX_AGE`` seconds (300 here unless the
environment says otherwise; Powertools' own default of 5 s would cost an SSM call every few
requests). Resolving at first use keeps start-up off the network and keeps the value out of a
SnapStart snapshot; a rotated value is picked up within the cache age.

A reference that cannot be read raises :class:`~capandex.errors.Misconfigured`, whose message
(setting, reference, AWS error code — never a value) reaches the log, not the client.
"""

from __future__ import annotations

import os

from capandex.errors import Misconfigured

SSM_PREFIX = "ssm:"
SECRETS_MANAGER_PREFIX = "secretsmanager:"
#: seconds a resolved value is reused before it is fetched again
DEFAULT_MAX_AGE_S = 300


def is_reference(value: str | None) -> bool:
    """Whether ``value`` names a stored secret instead of being one."""
    return bool(value) and value.startswith((SSM_PREFIX, SECRETS_MANAGER_PREFIX))  # type: ignore[union-attr]


def reveal(value: str, *, setting: str) -> str:
    """The secret ``value`` stands for: itself, or the stored value it references.

    Args:
        value: a plain value or a reference (``ssm:…``, ``secretsmanager:…``).
        setting: the environment variable it came from, named in errors.

    Raises:
        Misconfigured: the reference is empty, missing, unreadable (IAM, KMS) or not a string.
    """
    if not is_reference(value):
        return value
    scheme, _, name = value.partition(":")
    if not name:
        raise Misconfigured(f"{setting} is {value!r}: the reference names no parameter or secret.")
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, GetSecretError

    max_age = int(os.environ.get("POWERTOOLS_PARAMETERS_MAX_AGE", DEFAULT_MAX_AGE_S))
    try:
        if scheme == "ssm":
            stored = parameters.get_parameter(name, decrypt=True, max_age=max_age)
        else:
            stored = parameters.get_secret(name, max_age=max_age)
    except (GetParameterError, GetSecretError) as exc:
        # Powertools' message carries the AWS error (ParameterNotFound, AccessDenied…), never a value.
        raise Misconfigured(f"{setting} could not be read from {value}: {exc}") from exc
    if not isinstance(stored, str) or not stored:
        raise Misconfigured(f"{setting} references {value}, which holds no text value.")
    return stored


def clear_cache() -> None:
    """Forget resolved values (tests; a rotation that must apply at once)."""
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
