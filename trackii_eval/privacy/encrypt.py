"""Passphrase encryption of exports, with the ``cryptography`` library (no home-made crypto).

A folder is packed into a ZIP archive in memory and encrypted as one Fernet token (AES-128-CBC
with HMAC-SHA256, authenticated: a wrong passphrase or a changed byte is detected) under a key
derived from the passphrase with scrypt (RFC 7914; n = 2**15, r = 8, p = 1, a 16-byte random
salt: about 32 MiB and a tenth of a second per guess, which is what makes guessing costly).

File format (all of it but the token is public)::

    TRACKII-EVAL-ENCRYPTED\\n
    {"format": 1, "kdf": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<base64>"}\\n
    <Fernet token>

A recipient without trackii_eval decrypts with a few lines of Python and ``cryptography``:
derive the key with ``Scrypt(salt, 32, n, r, p).derive(passphrase)``, base64url-encode it,
and call ``Fernet(key).decrypt(token)``; the result is a ZIP archive.

References
----------
.. [1] Percival, C. and Josefsson, S. (2016). The scrypt Password-Based Key Derivation
   Function. RFC 7914. https://www.rfc-editor.org/rfc/rfc7914
.. [2] Fernet specification. https://github.com/fernet/spec/blob/master/Spec.md
.. [3] OWASP Password Storage Cheat Sheet (scrypt parameters).
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import zipfile
from pathlib import Path

from ..errors import StoreError

__all__ = [
    "MAGIC",
    "MIN_PASSPHRASE_LENGTH",
    "decrypt_bytes",
    "decrypt_to_folder",
    "encrypt_bytes",
    "encrypt_folder",
]

MAGIC = b"TRACKII-EVAL-ENCRYPTED\n"
#: Shorter passphrases are refused: scrypt slows guessing, it cannot save a short passphrase.
MIN_PASSPHRASE_LENGTH = 12
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


class EncryptionError(StoreError):
    """An export cannot be encrypted or decrypted (wrong passphrase, damaged file)."""


def _fernet(passphrase: str, salt: bytes, n: int, r: int, p: int):  # type: ignore[no-untyped-def]
    try:
        from cryptography.fernet import Fernet
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    except ImportError:  # pragma: no cover - depends on the installation
        raise EncryptionError(
            "encrypting exports needs the 'cryptography' package: pip install cryptography"
        ) from None
    key = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def _check_passphrase(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise EncryptionError(
            f"the passphrase has {len(passphrase)} characters; use at least "
            f"{MIN_PASSPHRASE_LENGTH} (several random words), and share it with the recipient "
            "by another channel than the file")


def encrypt_bytes(data: bytes, passphrase: str) -> bytes:
    """Encrypt ``data`` under ``passphrase``; returns the file content described above.

    Raises
    ------
    EncryptionError
        If the passphrase is shorter than :data:`MIN_PASSPHRASE_LENGTH`.
    """
    _check_passphrase(passphrase)
    salt = secrets.token_bytes(16)
    header = {"format": 1, "kdf": "scrypt", **_SCRYPT,
              "salt": base64.b64encode(salt).decode("ascii")}
    token = _fernet(passphrase, salt, **_SCRYPT).encrypt(data)
    return MAGIC + json.dumps(header).encode("ascii") + b"\n" + token


def decrypt_bytes(blob: bytes, passphrase: str) -> bytes:
    """Decrypt what :func:`encrypt_bytes` wrote.

    Raises
    ------
    EncryptionError
        If the file is not an encrypted export, or the passphrase is wrong or the file was
        changed (Fernet authenticates the whole token).
    """
    from cryptography.fernet import InvalidToken

    if not blob.startswith(MAGIC):
        raise EncryptionError("not an encrypted trackii_eval export (header missing)")
    try:
        header_line, token = blob[len(MAGIC):].split(b"\n", 1)
        header = json.loads(header_line)
        salt = base64.b64decode(header["salt"])
        params = {k: int(header[k]) for k in ("n", "r", "p")}
    except (ValueError, KeyError) as exc:
        raise EncryptionError(f"damaged encrypted export: unreadable header ({exc})") from None
    if header.get("format") != 1 or header.get("kdf") != "scrypt":
        raise EncryptionError(f"encrypted export of an unknown format {header.get('format')}")
    try:
        return _fernet(passphrase, salt, **params).decrypt(token)
    except InvalidToken:
        raise EncryptionError(
            "cannot decrypt: wrong passphrase, or the file was changed or damaged") from None


def encrypt_folder(folder: str | os.PathLike[str], dest: str | os.PathLike[str],
                   passphrase: str) -> Path:
    """Pack every file under ``folder`` into a ZIP archive and write it encrypted to ``dest``.

    The plaintext archive exists only in memory; ``dest`` gets mode 0o600.
    """
    root = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            zf.write(path, path.relative_to(root).as_posix())
    blob = encrypt_bytes(buffer.getvalue(), passphrase)
    target = Path(dest)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(blob)
    os.chmod(target, 0o600)
    return target


def decrypt_to_folder(src: str | os.PathLike[str], folder: str | os.PathLike[str],
                      passphrase: str) -> list[Path]:
    """Decrypt an encrypted export into ``folder`` (created owner-only); return the files."""
    from .at_rest import private_dir, private_file

    data = decrypt_bytes(Path(src).read_bytes(), passphrase)
    out = private_dir(folder)
    written = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for member in zf.namelist():
            target = (out / member).resolve()
            if out.resolve() not in target.parents:
                raise EncryptionError(f"{src}: archive member {member!r} points outside the "
                                      "output folder; refusing to extract")
            private_dir(target.parent)
            target.write_bytes(zf.read(member))
            written.append(private_file(target))
    return written
