"""Where data keys come from and what wraps them: KMS in AWS, a local master key file otherwise.

Both keyrings expose the same four operations on a record's data key, always bound to the
record's :class:`~capandex.vault.envelope.VaultContext`:

- ``generate(ctx)`` → ``(plaintext data key, wrap info, wrapped key)`` for a new record;
- ``wrap(data_key, ctx)`` → ``(wrap info, wrapped key)`` (moving a record to this keyring);
- ``unwrap(wrap, wrapped, ctx)`` → plaintext data key;
- ``rewrap(wrap, wrapped, ctx)`` → the data key wrapped under the *current* key, or ``None`` when
  it already is (rotation; never touches the field ciphertexts).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from capandex.errors import UpstreamUnavailable
from capandex.private_files import private_dir
from capandex.vault.envelope import KEY_BYTES, NONCE_BYTES, TAMPERED, VaultContext, VaultError

logger = logging.getLogger("capandex.vault")

Wrapped = tuple[dict[str, Any], bytes]


class Keyring(Protocol):
    by: str

    def generate(self, ctx: VaultContext) -> tuple[bytes, dict[str, Any], bytes]: ...

    def wrap(self, data_key: bytes, ctx: VaultContext) -> Wrapped: ...

    def unwrap(self, wrap: dict[str, Any], wrapped: bytes, ctx: VaultContext) -> bytes: ...

    def rewrap(self, wrap: dict[str, Any], wrapped: bytes, ctx: VaultContext) -> Wrapped | None: ...

    def current_version(self) -> str: ...


# --------------------------------------------------------------------------------------------
# Local master key file (embedded defaults)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _KeyFile:
    current: int
    keys: dict[int, bytes]
    #: (inode, size, mtime_ns, mode, uid): reload when another process rotated the keys, and
    #: re-check when the file was opened up (a chmod changes no content, so mtime stays)
    signature: tuple[int, ...]


class LocalKeyring:
    """AES-256-GCM master keys in one JSON file (mode 0600), one entry per version.

    File: ``{"format": 1, "current": 2, "keys": {"1": "<base64>", "2": "<base64>"}}``. It is
    created on first use with mode 0600 (atomically: written to a private temporary file, then
    hard-linked into place, so a concurrent creator never reads a half-written file) and refused
    when group/other can access it, when it is a symlink, or when another user owns it. Old
    versions stay in the file so records not yet re-wrapped keep decrypting.
    """

    by = "local"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file: _KeyFile | None = None

    # -- file handling ------------------------------------------------------------------------

    def _signature(self) -> tuple[int, ...] | None:
        try:
            return _signature_of(os.lstat(self.path))
        except FileNotFoundError:
            return None

    def _read(self) -> _KeyFile:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise VaultError(f"The vault master key file {self.path} does not exist; "
                             "secrets sealed with it cannot be opened.") from None
        except OSError as exc:  # ELOOP: a symlink
            raise VaultError(f"The vault master key file {self.path} cannot be opened safely "
                             f"(is it a symlink?): {exc.strerror}.") from None
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            _check_private(self.path, st)
            raw = handle.read()
        try:
            doc = json.loads(raw)
            keys = {int(v): base64.b64decode(k, validate=True) for v, k in doc["keys"].items()}
            current = int(doc["current"])
            if current not in keys or any(len(k) != KEY_BYTES for k in keys.values()):
                raise ValueError("bad key sizes or current version")
        except (ValueError, KeyError, TypeError) as exc:
            raise VaultError(f"The vault master key file {self.path} is corrupt.") from exc
        return _KeyFile(current, keys, _signature_of(st))

    def _write_new(self, keys: dict[int, bytes], current: int, *, replace: bool) -> None:
        """Write the key file through a private temporary file (mode 0600 from the start)."""
        private_dir(self.path.parent)
        doc = {"format": 1, "current": current,
               "keys": {str(v): base64.b64encode(k).decode() for v, k in sorted(keys.items())}}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(json.dumps(doc).encode())
                handle.flush()
                os.fsync(handle.fileno())
            if replace:
                os.replace(tmp, self.path)
            else:
                with contextlib.suppress(FileExistsError):  # another process created it first
                    os.link(tmp, self.path)
                os.unlink(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _load(self, *, create: bool) -> _KeyFile:
        with self._lock:
            signature = self._signature()
            if signature is None:
                if not create:
                    return self._read()  # raises the clear "does not exist" error
                self._write_new({1: os.urandom(KEY_BYTES)}, 1, replace=False)
                logger.info("vault master key created", extra={"path": str(self.path)})
                self._file = None
                signature = self._signature()
            if self._file is None or self._file.signature != signature:
                self._file = self._read()
            return self._file

    def rotate(self) -> int:
        """Add a new master key version and make it current; returns the new version.

        Holds an exclusive lock on ``<file>.lock`` and re-reads the file under it, so two
        rotations at once (two operators, a retried job) add two versions: neither replaces a
        version the other already wrapped data keys with, which would lose those secrets.
        """
        self._load(create=True)
        with self._lock, _exclusive(self.path):
            keyfile = self._read()
            version = max(keyfile.keys) + 1
            self._write_new({**keyfile.keys, version: os.urandom(KEY_BYTES)}, version, replace=True)
            self._file = None
        logger.info("vault master key rotated", extra={"version": version})
        return version

    # -- keyring operations ---------------------------------------------------------------------

    def current_version(self) -> str:
        return f"local:{self._load(create=True).current}"

    def generate(self, ctx: VaultContext) -> tuple[bytes, dict[str, Any], bytes]:
        data_key = os.urandom(KEY_BYTES)
        wrap, wrapped = self.wrap(data_key, ctx)
        return data_key, wrap, wrapped

    def wrap(self, data_key: bytes, ctx: VaultContext) -> Wrapped:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        keyfile = self._load(create=True)
        nonce = os.urandom(NONCE_BYTES)
        wrapped = nonce + AESGCM(keyfile.keys[keyfile.current]).encrypt(nonce, data_key, ctx.aad("key"))
        return {"by": self.by, "version": keyfile.current}, wrapped

    def unwrap(self, wrap: dict[str, Any], wrapped: bytes, ctx: VaultContext) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        keyfile = self._load(create=False)
        master = keyfile.keys.get(wrap.get("version"))  # type: ignore[arg-type]
        if master is None:
            raise VaultError(f"The vault master key version {wrap.get('version')!r} is not in {self.path}.")
        try:
            data_key = AESGCM(master).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], ctx.aad("key"))
        except (InvalidTag, ValueError) as exc:
            raise VaultError(TAMPERED) from exc
        if len(data_key) != KEY_BYTES:
            raise VaultError(TAMPERED)
        return data_key

    def rewrap(self, wrap: dict[str, Any], wrapped: bytes, ctx: VaultContext) -> Wrapped | None:
        if wrap.get("version") == self._load(create=True).current:
            return None
        # The data key is in memory only between these two lines; field ciphertexts stay sealed.
        return self.wrap(self.unwrap(wrap, wrapped, ctx), ctx)


def _signature_of(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock`` (mode 0600) across processes, for changes
    of the key file; a no-op where ``fcntl`` does not exist (Windows development machines)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _check_private(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise VaultError(f"The vault master key file {path} is not a regular file.")
    if st.st_mode & 0o077:
        raise VaultError(f"The vault master key file {path} is accessible by other users "
                         f"(mode {stat.S_IMODE(st.st_mode):04o}); run `chmod 600 {path}`.")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise VaultError(f"The vault master key file {path} belongs to another user.")


# --------------------------------------------------------------------------------------------
# AWS KMS
# --------------------------------------------------------------------------------------------

#: KMS answers meaning "this ciphertext/context/key will never work" (→ VaultError); anything
#: else from KMS (throttling, internal errors, network) is transient (→ UpstreamUnavailable).
_PERMANENT_KMS_ERRORS = frozenset({
    "InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException", "NotFoundException",
    "DisabledException", "KMSInvalidStateException", "InvalidKeyUsageException", "ValidationException",
    "InvalidGrantTokenException",
})


class KmsKeyring:
    """Data keys from KMS ``GenerateDataKey`` (AES_256) under ``key_id`` (id, ARN or alias).

    The boto3 client is injected (tests pass one inside ``moto.mock_aws``) or created on first use.
    Each record's encryption context binds its wrapped data key to owner, record and purpose.
    Rotation: KMS's own automatic rotation is transparent (same key ARN); ``rewrap`` moves records
    wrapped under another key to ``key_id`` with ``ReEncrypt``, so the data key never leaves KMS.
    """

    by = "kms"

    def __init__(self, key_id: str | None, *, client: Any = None, region: str | None = None) -> None:
        self.key_id = key_id
        self.region = region
        self._client = client
        self._arn: str | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3

                self._client = boto3.client("kms", region_name=self.region)
            return self._client

    def _require_key(self) -> str:
        if not self.key_id:
            raise VaultError("No KMS key is configured for the vault (set CAPANDEX_VAULT_KMS_KEY_ID).")
        return self.key_id

    def _arn_of_current(self) -> str:
        if self._arn is None:
            meta = self._call("describe_key", KeyId=self._require_key())
            self._arn = meta["KeyMetadata"]["Arn"]
        return self._arn

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _PERMANENT_KMS_ERRORS:
                raise VaultError(TAMPERED if code in ("InvalidCiphertextException", "IncorrectKeyException")
                                 else f"KMS refused the vault operation ({code}).") from None
            raise UpstreamUnavailable(f"KMS is unavailable ({code or 'error'}); retry later.") from None
        except BotoCoreError as exc:
            raise UpstreamUnavailable(f"KMS could not be reached ({type(exc).__name__}); retry later.") from None

    def current_version(self) -> str:
        return f"kms:{self._arn_of_current()}"

    def generate(self, ctx: VaultContext) -> tuple[bytes, dict[str, Any], bytes]:
        out = self._call("generate_data_key", KeyId=self._require_key(), KeySpec="AES_256",
                         EncryptionContext=ctx.encryption_context())
        return out["Plaintext"], {"by": self.by, "key": out["KeyId"]}, out["CiphertextBlob"]

    def wrap(self, data_key: bytes, ctx: VaultContext) -> Wrapped:
        out = self._call("encrypt", KeyId=self._require_key(), Plaintext=data_key,
                         EncryptionContext=ctx.encryption_context())
        return {"by": self.by, "key": out["KeyId"]}, out["CiphertextBlob"]

    def unwrap(self, wrap: dict[str, Any], wrapped: bytes, ctx: VaultContext) -> bytes:
        # KeyId pins the key we expect, so a ciphertext of another key in the account is refused.
        out = self._call("decrypt", CiphertextBlob=wrapped, KeyId=str(wrap.get("key")),
                         EncryptionContext=ctx.encryption_context())
        data_key: bytes = out["Plaintext"]
        if len(data_key) != KEY_BYTES:
            raise VaultError(TAMPERED)
        return data_key

    def rewrap(self, wrap: dict[str, Any], wrapped: bytes, ctx: VaultContext) -> Wrapped | None:
        if wrap.get("key") == self._arn_of_current():
            return None
        context = ctx.encryption_context()
        out = self._call("re_encrypt", CiphertextBlob=wrapped, SourceKeyId=str(wrap.get("key")),
                         SourceEncryptionContext=context, DestinationKeyId=self._require_key(),
                         DestinationEncryptionContext=context)
        return {"by": self.by, "key": out["KeyId"]}, out["CiphertextBlob"]
