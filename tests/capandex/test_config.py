"""Settings in AWS: what is required at start-up, and secrets kept in SSM or Secrets Manager (moto)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from capandex import secretstore
from capandex.config import Settings
from capandex.errors import Misconfigured

DATABASE_URL = "postgresql://capandex:pw-from-ssm@db.example:6543/postgres"
AWS = {"CAPANDEX_ENV": "aws", "supabase_url": "https://abcdefgh.supabase.co",
       "database_url": "ssm:/capandex-test/database-url", "CAPANDEX_VAULT_KMS_KEY_ID": "alias/capandex-test-vault"}


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("POWERTOOLS_PARAMETERS_MAX_AGE", raising=False)
    secretstore.clear_cache()
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1"), boto3.client("secretsmanager", region_name="us-east-1")
    secretstore.clear_cache()


@pytest.mark.parametrize("missing", ["supabase_url", "database_url", "CAPANDEX_VAULT_KMS_KEY_ID"])
def test_start_up_stops_naming_the_missing_setting(missing: str) -> None:
    settings = {k: v for k, v in AWS.items() if k != missing}
    expected = {"supabase_url": "SUPABASE_URL", "database_url": "DATABASE_URL"}.get(missing, missing)
    with pytest.raises(Misconfigured, match=f"needs {expected}, which is not set"):
        Settings(**settings)


def test_every_missing_setting_is_named_at_once() -> None:
    with pytest.raises(Misconfigured) as caught:
        Settings(CAPANDEX_ENV="aws")
    assert "SUPABASE_URL, DATABASE_URL, CAPANDEX_VAULT_KMS_KEY_ID" in caught.value.message


def test_a_function_names_what_it_needs_besides() -> None:
    settings = Settings(**AWS)
    with pytest.raises(Misconfigured, match="CAPANDEX_DATA_BUCKET, CAPANDEX_TICK_QUEUE_URL, which are not set"):
        settings.require("data_bucket", "tick_queue_url")
    Settings(**AWS, CAPANDEX_DATA_BUCKET="bucket").require("data_bucket")  # present: no error
    Settings().require("data_bucket", "tick_queue_url")  # the embedded defaults need none of it


def test_database_url_from_an_ssm_secure_string_is_fetched_at_first_use_and_cached(aws) -> None:
    ssm, _ = aws
    ssm.put_parameter(Name="/capandex-test/database-url", Value=DATABASE_URL, Type="SecureString")
    settings = Settings(**AWS)  # nothing is fetched while settings are read
    assert settings.database_url == "ssm:/capandex-test/database-url"
    assert settings.sqlalchemy_url == "postgresql+psycopg://capandex:pw-from-ssm@db.example:6543/postgres"
    ssm.put_parameter(Name="/capandex-test/database-url", Value="postgresql://rotated@db/x", Type="SecureString",
                      Overwrite=True)
    assert "pw-from-ssm" in settings.sqlalchemy_url  # cached for POWERTOOLS_PARAMETERS_MAX_AGE (300 s)
    secretstore.clear_cache()
    assert settings.sqlalchemy_url == "postgresql+psycopg://rotated@db/x"


def test_jwt_secret_from_secrets_manager(aws) -> None:
    _, secrets = aws
    secrets.create_secret(Name="capandex-test/jwt", SecretString="s" * 40)
    settings = Settings(**AWS, SUPABASE_JWT_SECRET="secretsmanager:capandex-test/jwt")
    assert settings.jwt_secret() == "s" * 40


@pytest.mark.parametrize("reference", ["ssm:/capandex-test/nothing-here", "secretsmanager:capandex-test/none"])
def test_an_unreadable_reference_names_setting_and_reference_not_a_value(aws, reference: str) -> None:
    settings = Settings(**{**AWS, "database_url": reference})
    with pytest.raises(Misconfigured, match=f"DATABASE_URL could not be read from {reference}") as caught:
        _ = settings.sqlalchemy_url
    assert caught.value.status == 500


def test_plain_values_still_work_and_dev_secret_is_refused() -> None:
    settings = Settings(**{**AWS, "database_url": DATABASE_URL}, SUPABASE_JWT_SECRET="t" * 40)
    assert settings.sqlalchemy_url.endswith("@db.example:6543/postgres") and settings.jwt_secret() == "t" * 40
    with pytest.raises(ValueError, match="development secret"):
        Settings(**AWS, SUPABASE_JWT_SECRET="capandex-local-development-jwt-secret-do-not-deploy")
