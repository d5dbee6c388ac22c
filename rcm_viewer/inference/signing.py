"""Ed25519 signatures of model bundles: who vouches for a bundle, not only that it is whole.

The manifest's seal (``manifest_sha256``) and the per-file sha256 entries make a bundle
self-consistent, but anyone can edit the manifest and reseal it. A signature answers the
other question: which key holder produced exactly this manifest. The signature lives in
its own file, ``signature.json``, beside the manifest (a signature inside manifest.json
would have to be left out of the very bytes it covers). It signs the exact bytes of
``manifest.json``; the manifest seals every other file by sha256, so signing the manifest
signs the whole bundle.

Trust comes from public keys the user put into ``<data dir>/trusted-keys/*.pub`` (the key
name shown is the file name) plus the project's own key shipped in
``rcm_viewer/inference/keys/``. The project key vouches only for demonstration bundles:
a bundle it signed is always treated as a demonstration model, whatever its manifest
says, so re-signing an edited demo bundle with the project key cannot remove the banner.

The outcome is a short text on ``ModelBundle.trust``: ``signed by NAME``,
``unverified: unsigned`` or ``unverified: unknown key``. A signature that does not match
the manifest (the manifest changed after signing) is refused like a broken seal.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rcm_viewer.errors import ModelBundleError

log = logging.getLogger(__name__)

SIGNATURE_NAME = "signature.json"
ALGORITHM = "ed25519"
SIGNATURE_SCHEMA = 1
TRUSTED_KEYS_DIR_NAME = "trusted-keys"
PUBLIC_KEY_SUFFIX = ".pub"
PRIVATE_KEY_SUFFIX = ".pem"
PROJECT_KEY_NAME = "rcm-viewer project"
PROJECT_KEY_PATH = Path(__file__).resolve().parent / "keys" / "rcm-viewer-project.pub"

TRUST_SIGNED_PREFIX = "signed by "
TRUST_UNSIGNED = "unverified: unsigned"
TRUST_UNKNOWN_KEY = "unverified: unknown key"
TRUST_PROJECT = f"{TRUST_SIGNED_PREFIX}{PROJECT_KEY_NAME} (demonstration model)"
#: What a view shows for a result whose model could not be verified.
UNVERIFIED_LABEL = "unverified model"
#: Key and signature files are a few hundred bytes; anything larger is refused unread.
MAX_KEY_BYTES = 64 * 1024


def is_verified(trust: str) -> bool:
    """True when ``trust`` names a trusted key that signed the bundle."""
    return trust.startswith(TRUST_SIGNED_PREFIX)


def is_unverified(trust: str) -> bool:
    """True for an unsigned or unknown-key bundle ("" = not recorded: neither)."""
    return trust.startswith("unverified")


@dataclass(frozen=True)
class TrustedKey:
    name: str
    key_id: str
    public_bytes: bytes
    project: bool = False


def _read_small(path: Path, limit: int = MAX_KEY_BYTES) -> bytes:
    """A regular file of at most ``limit`` bytes (no FIFO, no device), else OSError."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise OSError(f"{path.name} is larger than {limit} bytes")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OSError(f"{path.name} grew while it was read")
    return data


def key_id(public_bytes: bytes) -> str:
    """Short fingerprint of a raw 32-byte Ed25519 public key (sha256, 16 hex digits)."""
    return hashlib.sha256(public_bytes).hexdigest()[:16]


def _raw_public(pem: bytes, where: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where} is not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{where} is not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def pem_key_id(pem: bytes) -> str:
    """The key id of a PEM public key (ValueError when it is not an Ed25519 one)."""
    return key_id(_raw_public(pem, "the public key"))


def trusted_keys_dir() -> Path | None:
    """``<data dir>/trusted-keys`` (not created here), or None when there is no data dir."""
    from rcm_viewer.errors import RcmError
    from rcm_viewer.paths import user_data_dir

    with contextlib.suppress(OSError, RcmError):
        return user_data_dir() / TRUSTED_KEYS_DIR_NAME
    return None


def trusted_keys() -> list[TrustedKey]:
    """The project key, then every readable ``*.pub`` in the trusted-keys folder.

    A key file that cannot be read or parsed is skipped with a log warning (one bad file
    must not hide the others); it simply trusts nothing.
    """
    keys: list[TrustedKey] = []
    try:
        raw = _raw_public(_read_small(PROJECT_KEY_PATH), PROJECT_KEY_PATH.name)
        keys.append(TrustedKey(PROJECT_KEY_NAME, key_id(raw), raw, project=True))
    except (OSError, ValueError) as exc:
        log.warning("the project's public key cannot be read: %s", exc)
    folder = trusted_keys_dir()
    if folder is not None and folder.is_dir():
        for path in sorted(folder.glob(f"*{PUBLIC_KEY_SUFFIX}")):
            try:
                raw = _raw_public(_read_small(path), path.name)
            except (OSError, ValueError) as exc:
                log.warning("trusted key %s skipped: %s", path, exc)
                continue
            keys.append(TrustedKey(path.stem, key_id(raw), raw))
    return keys


@dataclass(frozen=True)
class Verification:
    trust: str
    #: True when the project key signed it: the bundle is a demonstration model.
    force_demonstration: bool = False


def verify_manifest_bytes(bundle_dir: Path, manifest_bytes: bytes) -> Verification:
    """Check ``signature.json`` against the manifest bytes that were parsed.

    Raises ``ModelBundleError`` for an unreadable signature file or a signature by a
    trusted key that does not match (the manifest was changed after signing).
    """
    path = bundle_dir / SIGNATURE_NAME
    where = f"{SIGNATURE_NAME} in {bundle_dir}"
    if not os.path.lexists(path):
        return Verification(TRUST_UNSIGNED)
    try:
        record = json.loads(_read_small(path).decode("utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        algorithm = record.get("algorithm")
        signed_id = record.get("key_id")
        signature = base64.b64decode(str(record.get("signature", "")), validate=True)
    except OSError as exc:
        raise ModelBundleError(f"{where} cannot be read ({exc}): refused") from None
    except (UnicodeDecodeError, ValueError, binascii.Error) as exc:
        raise ModelBundleError(f"{where} is not a valid signature file ({exc}): refused") from None
    if algorithm != ALGORITHM or not isinstance(signed_id, str):
        raise ModelBundleError(
            f"{where} names algorithm {algorithm!r}; only {ALGORITHM} signatures are accepted"
        )
    key = next((k for k in trusted_keys() if k.key_id == signed_id), None)
    if key is None:
        return Verification(f"{TRUST_UNKNOWN_KEY} {signed_id}")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(key.public_bytes).verify(signature, manifest_bytes)
    except InvalidSignature:
        raise ModelBundleError(
            f"manifest.json in {bundle_dir} does not match its signature by {key.name} in "
            f"{SIGNATURE_NAME}: the manifest was changed after signing; refused"
        ) from None
    if key.project:
        return Verification(TRUST_PROJECT, force_demonstration=True)
    return Verification(f"{TRUST_SIGNED_PREFIX}{key.name}")


# ----------------------------------------------------------------------- keys, signing


def generate_key_pair(out_prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``PREFIX.pem`` (private, 0600) and ``PREFIX.pub``; refuses to overwrite."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    prefix = Path(out_prefix).expanduser()
    private_path = prefix.with_name(prefix.name + PRIVATE_KEY_SUFFIX)
    public_path = prefix.with_name(prefix.name + PUBLIC_KEY_SUFFIX)
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise ModelBundleError(f"{path} already exists: choose another name")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        os.chmod(private_path, 0o600)
        fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(public_pem)
        os.chmod(public_path, 0o644)  # public: the app's umask (077) would hide it
    except OSError as exc:
        raise ModelBundleError(f"cannot write the key pair {prefix}: {exc}") from exc
    return private_path, public_path


def _load_private_key(path: Path):  # noqa: ANN202 - cryptography's type, imported lazily
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        pem = _read_small(path.expanduser())
    except OSError as exc:
        raise ModelBundleError(f"signing key {path} cannot be read ({exc})") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ModelBundleError(
            f"signing key {path} is not an unencrypted PEM private key ({exc})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ModelBundleError(f"signing key {path} is not an Ed25519 key")
    return key


def check_signing_key(path: str | os.PathLike[str]) -> None:
    """Raise ``ModelBundleError`` unless ``path`` is a usable Ed25519 private key."""
    _load_private_key(Path(path))


def sign_bundle(bundle_dir: str | os.PathLike[str], private_key: str | os.PathLike[str]) -> Path:
    """Verify a bundle (seal, checksums), then write its ``signature.json``.

    The bundle must be whole before it is vouched for, so it is loaded first (an old
    signature by a trusted key that no longer matches is ignored here: signing replaces
    it). Returns the signature file.
    """
    from cryptography.hazmat.primitives import serialization

    from rcm_viewer.fileio import atomic_write
    from rcm_viewer.inference.bundle import (
        MANIFEST_NAME,
        MAX_TEXT_BYTES,
        _read_file,
        load_bundle,
    )

    directory = Path(bundle_dir).expanduser()
    key = _load_private_key(Path(private_key))
    bundle = load_bundle(directory, check_signature=False)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    project = next((k for k in trusted_keys() if k.project), None)
    if project is not None and project.key_id == key_id(public) and not (bundle.manifest.synthetic):
        raise ModelBundleError(
            f"{directory.name} is not a demonstration model (training.synthetic is false): "
            "the project key signs demonstration bundles only; use your own key"
        )
    manifest_bytes = _read_file(directory / MANIFEST_NAME, directory, MAX_TEXT_BYTES)
    record = {
        "schema": SIGNATURE_SCHEMA,
        "algorithm": ALGORITHM,
        "key_id": key_id(public),
        "key_name": Path(private_key).stem,
        "signed_file": MANIFEST_NAME,
        "signed_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "signed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "signature": base64.b64encode(key.sign(manifest_bytes)).decode("ascii"),
    }
    path = directory / SIGNATURE_NAME
    try:
        atomic_write(path, json.dumps(record, indent=2) + "\n", mode=0o644)
    except OSError as exc:
        raise ModelBundleError(f"cannot write {path}: {exc}") from exc
    return path


def drop_signature(bundle_dir: Path) -> None:
    """Remove ``signature.json`` after the manifest was rewritten (it no longer matches)."""
    path = bundle_dir / SIGNATURE_NAME
    if os.path.lexists(path):
        with contextlib.suppress(OSError):
            path.unlink()
            log.warning(
                "%s: the manifest was rewritten, so its signature was removed; "
                "sign it again with rcm-viewer sign-bundle",
                bundle_dir,
            )
