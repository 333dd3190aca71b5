"""The vault's guarantees: AES-256-GCM envelope, binding to (user, record, purpose, field),
tamper detection, a private master key file, rotation without decrypting, and KMS via moto."""

from __future__ import annotations

import base64
import json
import os
import stat
import uuid
from pathlib import Path

import pytest

from capandex.vault import Sealed, Vault, VaultContext, VaultError
from capandex.vault.envelope import NONCE_BYTES
from capandex.vault.keyrings import KmsKeyring, LocalKeyring

SECRET = "s3cr3t-" + uuid.uuid4().hex
API_KEY = "ak-" + uuid.uuid4().hex


def ctx(user: str = "u1", record: str = "key_1", purpose: str = "exchange_key") -> VaultContext:
    return VaultContext(user_id=user, record_id=record, purpose=purpose)


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring(tmp_path / "data" / "vault-master-key.json")


@pytest.fixture
def vault(keyring: LocalKeyring) -> Vault:
    return Vault(keyring)


def sealed_doc(vault: Vault, c: VaultContext | None = None) -> dict:
    return vault.seal({"api_key": API_KEY, "secret": SECRET, "passphrase": None}, c or ctx()).to_json()


def test_round_trip_and_stored_form(vault: Vault) -> None:
    doc = sealed_doc(vault)
    assert doc["format"] == 1 and doc["alg"] == "AES-256-GCM"
    assert doc["wrap"] == {"by": "local", "version": 1}
    assert set(doc["fields"]) == {"api_key", "secret"}  # None values are not stored
    text = json.dumps(doc)
    assert SECRET not in text and API_KEY not in text
    opened = vault.open(json.loads(text), ctx())
    assert dict(opened) == {"api_key": API_KEY, "secret": SECRET}


def test_fresh_nonce_and_data_key_per_encryption(vault: Vault) -> None:
    a, b = sealed_doc(vault), sealed_doc(vault)
    blob_a, blob_b = (base64.b64decode(d["fields"]["secret"]) for d in (a, b))
    assert blob_a[:NONCE_BYTES] != blob_b[:NONCE_BYTES]
    assert blob_a != blob_b and a["key"] != b["key"]
    # nonce (12) + plaintext + tag (16): AES-GCM, no padding
    assert len(blob_a) == NONCE_BYTES + len(SECRET) + 16


@pytest.mark.parametrize("other", [ctx(user="u2"), ctx(record="key_2"), ctx(purpose="ai_key")],
                         ids=["other-user", "other-record", "other-purpose"])
def test_record_moved_to_another_context_fails(vault: Vault, other: VaultContext) -> None:
    doc = sealed_doc(vault)
    with pytest.raises(VaultError) as err:
        vault.open(doc, other)
    assert err.value.status == 500 and err.value.code == "vault_error"


def test_field_ciphertext_moved_between_fields_or_records_fails(vault: Vault) -> None:
    doc = sealed_doc(vault)
    swapped = {**doc, "fields": {"api_key": doc["fields"]["secret"], "secret": doc["fields"]["api_key"]}}
    with pytest.raises(VaultError):
        vault.open(swapped, ctx())
    # another user's field ciphertext pasted into this user's record (same vault, different data key)
    theirs = sealed_doc(vault, ctx(user="u2"))
    grafted = {**doc, "fields": {**doc["fields"], "secret": theirs["fields"]["secret"]}}
    with pytest.raises(VaultError):
        vault.open(grafted, ctx())


def _flip(b64: str, index: int) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize("where", ["field-nonce", "field-ciphertext", "field-tag", "wrapped-key"])
def test_any_flipped_bit_is_an_error_not_garbage(vault: Vault, where: str) -> None:
    doc = sealed_doc(vault)
    if where == "wrapped-key":
        doc["key"] = _flip(doc["key"], 20)
    else:
        index = {"field-nonce": 0, "field-ciphertext": NONCE_BYTES + 1, "field-tag": -1}[where]
        doc["fields"]["secret"] = _flip(doc["fields"]["secret"], index)
    with pytest.raises(VaultError, match="could not be decrypted"):
        vault.open(doc, ctx())


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(key="not base64!"),
    lambda d: d.update(format=99),
    lambda d: d["fields"].update(secret=base64.b64encode(b"short").decode()),
    lambda d: d.update(wrap={"by": "rot13"}),
    lambda d: d.pop("fields"),
])
def test_malformed_documents_are_vault_errors(vault: Vault, mutate) -> None:
    doc = sealed_doc(vault)
    mutate(doc)
    with pytest.raises(VaultError):
        vault.open(doc, ctx())
    with pytest.raises(VaultError):
        vault.open("{not json", ctx())


def test_repr_hides_values(vault: Vault) -> None:
    sealed = vault.seal({"secret": SECRET}, ctx())
    opened = vault.open(sealed, ctx())
    for text in (repr(sealed), str(sealed), repr(opened), str(opened)):
        assert SECRET not in text and sealed.to_json()["fields"]["secret"] not in text
    assert "secret" in repr(opened)


def test_master_key_file_is_created_private(vault: Vault, keyring: LocalKeyring) -> None:
    assert not keyring.path.exists()
    sealed_doc(vault)
    mode = stat.S_IMODE(os.stat(keyring.path).st_mode)
    assert mode == 0o600
    assert not [p for p in keyring.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_master_key_file_created_private_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        keyring = LocalKeyring(tmp_path / "k.json")
        Vault(keyring).seal({"secret": SECRET}, ctx())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(keyring.path).st_mode) == 0o600


def test_loose_master_key_file_is_refused(vault: Vault, keyring: LocalKeyring) -> None:
    doc = sealed_doc(vault)
    os.chmod(keyring.path, 0o644)
    fresh = Vault(LocalKeyring(keyring.path))
    with pytest.raises(VaultError, match="chmod 600"):
        fresh.open(doc, ctx())
    with pytest.raises(VaultError, match="chmod 600"):
        fresh.seal({"secret": SECRET}, ctx())
    os.chmod(keyring.path, 0o600)
    assert fresh.open(doc, ctx())["secret"] == SECRET


def test_symlinked_master_key_file_is_refused(vault: Vault, keyring: LocalKeyring, tmp_path: Path) -> None:
    doc = sealed_doc(vault)
    link = tmp_path / "link.json"
    link.symlink_to(keyring.path)
    with pytest.raises(VaultError, match="symlink"):
        Vault(LocalKeyring(link)).open(doc, ctx())


def test_missing_master_key_is_a_clear_error(vault: Vault, keyring: LocalKeyring) -> None:
    doc = sealed_doc(vault)
    keyring.path.unlink()
    with pytest.raises(VaultError, match="does not exist"):
        Vault(LocalKeyring(keyring.path)).open(doc, ctx())


def test_two_keyrings_racing_to_create_agree(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "k.json"
    rings = [LocalKeyring(path) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        docs = list(pool.map(lambda r: Vault(r).seal({"secret": SECRET}, ctx()), rings))
    reader = Vault(LocalKeyring(path))
    assert all(reader.open(d, ctx())["secret"] == SECRET for d in docs)


def test_rotation_rewraps_without_touching_field_ciphertexts(vault: Vault, keyring: LocalKeyring) -> None:
    old = vault.seal({"secret": SECRET}, ctx())
    assert vault.rewrap(old, ctx()) is None  # already current
    assert keyring.rotate() == 2
    moved = vault.rewrap(old, ctx())
    assert moved is not None and moved.key_version == "local:2" and old.key_version == "local:1"
    assert moved.fields == old.fields and moved.key != old.key
    assert vault.open(moved, ctx())["secret"] == SECRET
    assert vault.open(old, ctx())["secret"] == SECRET  # not yet re-wrapped records still open
    assert vault.seal({"secret": SECRET}, ctx()).key_version == "local:2"
    with pytest.raises(VaultError):
        vault.rewrap(old.to_json(), ctx(user="u2"))  # rewrap checks the binding too


def test_other_process_rotation_is_picked_up(vault: Vault, keyring: LocalKeyring) -> None:
    sealed_doc(vault)
    LocalKeyring(keyring.path).rotate()  # "another process"
    assert vault.seal({"secret": SECRET}, ctx()).key_version == "local:2"


def test_aws_without_kms_key_is_refused(tmp_path: Path) -> None:
    """Settings already stop start-up without the key (tests/capandex/test_config.py); the vault
    refuses on its own too, for settings built around that check."""
    from capandex.config import Settings
    from capandex.vault import get_vault

    settings = Settings.model_construct(env="aws", vault_kms_key_id=None, data_dir=tmp_path)
    with pytest.raises(VaultError, match="CAPANDEX_VAULT_KMS_KEY_ID"):
        get_vault(settings)


def test_get_vault_local_defaults_use_data_dir(configure) -> None:
    from capandex.vault import get_vault

    settings = configure(CAPANDEX_VAULT_KMS_KEY_ID=None)
    vault = get_vault(settings)
    vault.seal({"secret": SECRET}, ctx())
    assert (settings.data_dir / "vault-master-key.json").exists()
    assert get_vault(settings) is vault


# -------------------------------------------------------------------------------------------
# KMS (moto)
# -------------------------------------------------------------------------------------------

@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch):
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        import boto3

        yield boto3.client("kms", region_name="eu-west-1")


def test_kms_envelope(kms) -> None:
    key_id = kms.create_key(Description="vault")["KeyMetadata"]["KeyId"]
    vault = Vault(KmsKeyring(key_id, client=kms))
    sealed = vault.seal({"api_key": API_KEY, "secret": SECRET}, ctx())
    assert sealed.wrap["by"] == "kms" and sealed.wrap["key"].endswith(key_id)
    assert vault.open(sealed.to_json(), ctx())["secret"] == SECRET
    for other in (ctx(user="u2"), ctx(record="key_2"), ctx(purpose="ai_key")):
        with pytest.raises(VaultError):  # the encryption context binds the data key
            vault.open(sealed.to_json(), other)


def test_kms_client_created_lazily(kms) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    keyring = KmsKeyring(key_id)
    assert keyring._client is None
    vault = Vault(keyring)
    assert vault.open(vault.seal({"secret": SECRET}, ctx()), ctx())["secret"] == SECRET
    assert keyring._client is not None


def test_kms_rewrap_to_new_key_uses_reencrypt(kms) -> None:
    old_key = kms.create_key()["KeyMetadata"]["KeyId"]
    new_key = kms.create_key()["KeyMetadata"]["Arn"]
    old = Vault(KmsKeyring(old_key, client=kms)).seal({"secret": SECRET}, ctx())
    vault = Vault(KmsKeyring(new_key, client=kms))
    moved = vault.rewrap(old, ctx())
    assert moved is not None and moved.wrap["key"] == new_key and moved.fields == old.fields
    assert vault.open(moved, ctx())["secret"] == SECRET
    assert vault.rewrap(moved, ctx()) is None


def test_local_records_move_to_kms(kms, keyring: LocalKeyring) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    old = Vault(keyring).seal({"secret": SECRET}, ctx())
    vault = Vault(KmsKeyring(key_id, client=kms), {"local": keyring})
    assert vault.open(old, ctx())["secret"] == SECRET
    moved = vault.rewrap(old, ctx())
    assert moved is not None and moved.wrap["by"] == "kms"
    assert Vault(KmsKeyring(key_id, client=kms)).open(moved, ctx())["secret"] == SECRET


def test_kms_unavailable_is_503_not_vault_error(kms) -> None:
    from capandex.errors import UpstreamUnavailable

    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(VaultError, match="NotFoundException"):
        Vault(KmsKeyring(str(uuid.uuid4()), client=kms)).seal({"secret": SECRET}, ctx())

    import boto3
    from botocore.config import Config

    unreachable = boto3.client("kms", region_name="eu-west-1", endpoint_url="http://127.0.0.1:9",
                               config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    with pytest.raises(UpstreamUnavailable):
        Vault(KmsKeyring(key_id, client=unreachable)).seal({"secret": SECRET}, ctx())


def test_sealed_from_json_accepts_text(vault: Vault) -> None:
    doc = sealed_doc(vault)
    assert Sealed.from_json(json.dumps(doc)).to_json() == doc


def test_master_key_file_opened_up_while_in_use_is_refused(vault: Vault, keyring: LocalKeyring) -> None:
    """A chmod changes no content (same mtime): the cached keys must not keep being used."""
    doc = sealed_doc(vault)
    os.chmod(keyring.path, 0o640)
    with pytest.raises(VaultError, match="chmod 600"):
        vault.open(doc, ctx())
    os.chmod(keyring.path, 0o600)
    assert vault.open(doc, ctx())["secret"] == SECRET


def test_concurrent_rotations_never_replace_a_key_version(tmp_path: Path) -> None:
    """Two operators rotating at once: each gets its own new version, and whatever was sealed
    under either still opens (a replaced version would lose those secrets for good)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "k.json"
    rings = [LocalKeyring(path) for _ in range(6)]
    for ring in rings:
        ring.current_version()  # every "process" has the file loaded before the rotations race
    barrier = threading.Barrier(len(rings))

    def rotate_and_seal(ring: LocalKeyring) -> tuple[int, dict]:
        barrier.wait()
        version = ring.rotate()
        return version, Vault(ring).seal({"secret": SECRET}, ctx()).to_json()

    with ThreadPoolExecutor(len(rings)) as pool:
        results = list(pool.map(rotate_and_seal, rings))
    assert sorted(v for v, _ in results) == [2, 3, 4, 5, 6, 7]
    reader = Vault(LocalKeyring(path))
    assert all(reader.open(doc, ctx())["secret"] == SECRET for _, doc in results)
    assert stat.S_IMODE(os.stat(path.with_name("k.json.lock")).st_mode) == 0o600
