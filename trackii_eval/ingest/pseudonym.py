"""Keyed pseudonyms for participants: raw codes in, ``P-`` + 16 hex characters out.

Participants in Track II dialogues can be harassed, or worse, if they are identified, so a raw
participant code (or a self-generated identification code) never leaves ingest. It is replaced
by a keyed hash: ``HMAC-SHA256(key, namespace + "\\x00" + normalise_id(raw_id))``.

Why a *keyed* hash and not SHA-256 or MD5 of the code
    Codes have little entropy (two letters of a name, a birth month, ...): anyone holding an
    unkeyed hash can enumerate every possible code and invert it in seconds. Without the
    256-bit key, an HMAC output is indistinguishable from random, so the pseudonyms in the
    store, the reports and the review files say nothing about the person behind them.

Why the key matters so much
    The same key must be used for every wave of a study: new waves are linked to earlier ones
    through their pseudonyms. Losing the key means new waves can no longer be linked to the old
    pseudonyms; leaking it lets anyone holding the raw codes (or guessing them) re-identify the
    pseudonyms. Keep it outside the repository and outside the study store, readable by its
    owner only.

Key file format
    One line, 64 lowercase hexadecimal characters (the 32 key bytes) and a newline. Hex rather
    than raw bytes so that the same text can be put in ``TRACKII_EVAL_KEY``, copied to a
    password manager, or printed on paper for an offline backup without corruption.

References
----------
.. [1] Krawczyk, H., Bellare, M. and Canetti, R. (1997). HMAC: Keyed-Hashing for Message
   Authentication. RFC 2104. https://www.rfc-editor.org/rfc/rfc2104
.. [2] NIST (2015). Secure Hash Standard (SHS). FIPS 180-4.
   https://doi.org/10.6028/NIST.FIPS.180-4
.. [3] ISO/IEC 20889:2018. Privacy enhancing data de-identification terminology and
   classification of techniques (pseudonymization with keyed cryptographic hash functions).
.. [4] Unicode Standard Annex #15: Unicode Normalization Forms.
   https://unicode.org/reports/tr15/
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
import tempfile
import unicodedata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import IngestError, KeyMissingError, TrackIIEvalWarning

__all__ = [
    "KEY_BYTES",
    "PSEUDONYM_HEX_CHARS",
    "PseudonymKey",
    "generate_key",
    "load_key",
    "normalise_id",
    "write_key",
]

#: Length of a key in bytes (256 bits, the HMAC-SHA256 block-size-independent recommendation).
KEY_BYTES = 32
#: Hex characters of the HMAC kept in a pseudonym (64 bits); see :meth:`PseudonymKey.pseudonymize`.
PSEUDONYM_HEX_CHARS = 16

# Domain-separation label for the key fingerprint. Changing it changes every fingerprint, so it
# carries a version.
_FINGERPRINT_DOMAIN = b"trackii_eval/key-fingerprint/v1\x00"

# Dash-like characters a participant, a form or a spreadsheet may put in an ID: every Unicode
# "Pd" (dash punctuation) character plus the minus sign. Hebrew maqaf (U+05BE) and Arabic-script
# keyboards matter here: the dialogues this toolkit evaluates are often bilingual.
_DASHES = (
    "\u002d\u058a\u05be\u1400\u1806\u2010\u2011\u2012\u2013\u2014\u2015\u2e17\u2e1a\u2e3a"
    "\u2e3b\u2e40\u2e5d\u301c\u3030\u30a0\ufe31\ufe32\ufe58\ufe63\uff0d\u2212"
)
_SEPARATOR_RUN = re.compile(r"[\s" + re.escape(_DASHES) + r"]+")

_KEY_HELP = (
    "Create a key once per study, outside the repository and the study store:\n"
    "    trackii-eval keygen --out ~/.config/trackii_eval/<study>.key\n"
    "then pass it with --key-file ~/.config/trackii_eval/<study>.key or set\n"
    "    TRACKII_EVAL_KEY_FILE=~/.config/trackii_eval/<study>.key\n"
    "If this study already has pseudonyms, use the SAME key file as before: with a new or lost "
    "key, new waves can no longer be linked to the old pseudonyms (every participant would look "
    "like a new person). Back the key up somewhere safe and private."
)


def normalise_id(raw_id: str) -> str:
    """Normalise a raw participant ID so that trivially different spellings agree.

    Steps, in order: Unicode NFKC normalisation (full-width and compatibility characters become
    their plain forms), removal of invisible format characters (zero-width spaces, byte-order
    marks, left-to-right/right-to-left marks that bilingual forms insert), case folding,
    replacement of every run of whitespace and dash-like characters by a single ``-``, and
    stripping of leading and trailing separators. ``" ab 12 "``, ``"AB-12"``, ``"ab\u201312"``
    and ``"Ab \u2013 12"`` all normalise to ``"ab-12"``; ``"ab12"`` stays different, because a
    separator may be meaningful in an assigned ID.

    Parameters
    ----------
    raw_id
        The ID as read from a wave file.

    Returns
    -------
    str
        The normalised ID; may be empty if ``raw_id`` held only separators.

    References
    ----------
    .. [1] Unicode Standard Annex #15: Unicode Normalization Forms.
       https://unicode.org/reports/tr15/
    .. [2] The Unicode Standard, section 5.18 (case mapping, ``casefold``).
    """
    if not isinstance(raw_id, str):
        raise TypeError(f"a participant ID must be a str, not {type(raw_id).__name__}")
    if raw_id.isascii():
        # Fast path with the same result: NFKC leaves ASCII alone, no ASCII character is a
        # format character, and casefold() equals lower() on ASCII.
        text = raw_id.lower()
    else:
        text = unicodedata.normalize("NFKC", raw_id)
        # Format characters (category Cf) are invisible, so two IDs that look identical on
        # screen would otherwise get different pseudonyms.
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
        text = text.casefold()
    return _SEPARATOR_RUN.sub("-", text).strip("-")


def generate_key() -> bytes:
    """Return a new random 32-byte pseudonymization key.

    Returns
    -------
    bytes
        32 bytes from :func:`secrets.token_bytes` (the operating system's CSPRNG).

    References
    ----------
    .. [1] Python documentation, ``secrets`` -- generate secure random numbers.
       https://docs.python.org/3/library/secrets.html
    """
    return secrets.token_bytes(KEY_BYTES)


@dataclass(frozen=True, eq=False, repr=False)
class PseudonymKey:
    """A pseudonymization key. Its ``repr``/``str`` show only the fingerprint, never the key.

    Instances refuse to be pickled or serialised, so the key cannot leak into a cache, a
    multiprocessing queue or a saved session by accident: load it with :func:`load_key` in
    every process that needs it.

    Parameters
    ----------
    secret
        The key bytes (exactly 32).

    References
    ----------
    .. [1] Krawczyk, H., Bellare, M. and Canetti, R. (1997). HMAC: Keyed-Hashing for Message
       Authentication. RFC 2104. https://www.rfc-editor.org/rfc/rfc2104
    """

    secret: bytes = field(repr=False)
    _fingerprint: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes | bytearray):
            raise TypeError("a PseudonymKey is made from bytes")
        if len(self.secret) != KEY_BYTES:
            # The length is not secret; the bytes are, so they are not echoed.
            raise IngestError(
                f"a pseudonymization key must be {KEY_BYTES} bytes ({2 * KEY_BYTES} hex "
                f"characters), got {len(self.secret)} bytes"
            )
        object.__setattr__(self, "secret", bytes(self.secret))
        digest = hashlib.sha256(_FINGERPRINT_DOMAIN + self.secret).hexdigest()
        object.__setattr__(self, "_fingerprint", digest[:16])

    @classmethod
    def from_hex(cls, text: str) -> PseudonymKey:
        """Build a key from its 64-character hex form (surrounding whitespace ignored).

        Parameters
        ----------
        text
            The hex text, as written by :func:`write_key` or held in ``TRACKII_EVAL_KEY``.

        Returns
        -------
        PseudonymKey
            The key.

        References
        ----------
        .. [1] Josefsson, S. (2006). The Base16, Base32, and Base64 Data Encodings. RFC 4648.
        """
        cleaned = text.strip()
        if len(cleaned) != 2 * KEY_BYTES or not re.fullmatch(r"[0-9a-fA-F]+", cleaned):
            # Never include the text itself: it may be a (mistyped) key.
            raise IngestError(
                f"a pseudonymization key must be {2 * KEY_BYTES} hexadecimal characters; got "
                f"{len(cleaned)} characters"
                + ("" if re.fullmatch(r"[0-9a-fA-F]*", cleaned) else " including non-hex ones")
            )
        return cls(bytes.fromhex(cleaned))

    @property
    def fingerprint(self) -> str:
        """16 hex characters identifying the key, safe to print, log and store.

        It is the first 64 bits of ``SHA-256("trackii_eval/key-fingerprint/v1\\x00" + key)``.
        Safe because the key is 256 uniformly random bits: a hash of it cannot be inverted or
        brute-forced, and 64 bits of it say nothing usable about the key. The domain label
        makes the fingerprint differ from any other value derived from the key (it is not
        ``SHA-256(key)``, which another tool might use as a key ID, and no pseudonym can equal
        it because pseudonyms are HMACs of namespaced inputs). It lets the store check that a
        new wave is ingested with the same key as the previous ones.

        References
        ----------
        .. [1] NIST SP 800-108r1 (2022), Recommendation for Key Derivation Using Pseudorandom
           Functions (domain separation through labels).
        """
        return self._fingerprint

    def pseudonymize(self, raw_id: str, *, namespace: str = "participant") -> str:
        """Return the pseudonym of one raw ID: ``"P-"`` + 16 hex characters.

        Computed as ``HMAC-SHA256(key, namespace + "\\x00" + normalise_id(raw_id))`` and
        truncated to 64 bits. The namespace keeps pseudonyms for different purposes unlinkable
        (a participant's pseudonym cannot be matched with, say, a facilitator's or a linkage
        person key), and the NUL separator makes ``(namespace, id)`` pairs unambiguous.

        Collisions: with 64 bits, the chance that any two of ``n`` distinct IDs get the same
        pseudonym is about ``n**2 / 2**65``: 2.7e-12 for 10,000 participants, 2.7e-8 for a
        million. :meth:`pseudonymize_many` still checks for one and raises, because a collision
        would silently merge two people.

        Parameters
        ----------
        raw_id
            The raw participant ID or code (normalised with :func:`normalise_id` first).
        namespace
            What the ID identifies; non-empty, without NUL characters.

        Returns
        -------
        str
            The pseudonym, e.g. ``"P-3f9a0c61d2b7e845"``.

        Raises
        ------
        IngestError
            If the normalised ID is empty (an empty ID would make all such rows one person).

        References
        ----------
        .. [1] Krawczyk, H., Bellare, M. and Canetti, R. (1997). HMAC. RFC 2104.
        .. [2] Kelsey, J., Chang, S. and Perlner, R. (2016). SHA-3 Derived Functions.
           NIST SP 800-185 (on truncated MAC outputs and domain separation).
        """
        prefix = _namespace_prefix(namespace)
        normalised = normalise_id(raw_id)
        if not normalised:
            raise IngestError("a participant ID is empty (or only separators) after normalisation")
        return self._digest(prefix, normalised)

    def pseudonymize_many(
        self, raw_ids: pd.Series | Iterable[str], *, namespace: str = "participant"
    ) -> pd.Series:
        """Pseudonymize many IDs at once (each distinct normalised ID is hashed once).

        Parameters
        ----------
        raw_ids
            The raw IDs. Missing values (None/NaN/NA) and IDs that are empty after
            normalisation raise: pseudonymizing them would merge unrelated rows into one
            "person".
        namespace
            As in :meth:`pseudonymize`.

        Returns
        -------
        pandas.Series
            Pseudonyms, with the index and name of ``raw_ids`` when it is a Series.

        Raises
        ------
        IngestError
            For missing or empty IDs (the message gives their positions, never values), or in
            the astronomically unlikely event of a pseudonym collision.

        References
        ----------
        .. [1] Krawczyk, H., Bellare, M. and Canetti, R. (1997). HMAC. RFC 2104.
        """
        prefix = _namespace_prefix(namespace)
        series = raw_ids if isinstance(raw_ids, pd.Series) else pd.Series(list(raw_ids))
        values = series.to_numpy(dtype=object)
        bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
        if bad:
            shown = ", ".join(str(series.index[i]) for i in bad[:10])
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            raise IngestError(
                f"{len(bad)} participant ID(s) missing or not text at position(s) {shown}{more}"
            )
        # Hash each distinct raw value once; normalisation itself is per string.
        uniques = pd.unique(values)
        normalised = {raw: normalise_id(raw) for raw in uniques}
        empty = [raw for raw, n in normalised.items() if not n]
        if empty:
            positions = [i for i, v in enumerate(values) if not normalised[v]][:10]
            raise IngestError(
                "participant ID(s) empty after normalisation at position(s) "
                + ", ".join(str(series.index[i]) for i in positions)
            )
        by_norm = {n: self._digest(prefix, n) for n in set(normalised.values())}
        if len(set(by_norm.values())) != len(by_norm):
            raise IngestError(
                "two different participant IDs received the same pseudonym (a 64-bit "
                "collision); report this: linkage would merge two people"
            )
        out = [by_norm[normalised[v]] for v in values]
        return pd.Series(out, index=series.index, name=series.name, dtype=object)

    def _digest(self, prefix: bytes, normalised: str) -> str:
        mac = hmac.digest(self.secret, prefix + normalised.encode("utf-8"), "sha256")
        return "P-" + mac.hex()[:PSEUDONYM_HEX_CHARS]

    # --- never show or serialise the key -------------------------------------------------------
    def __repr__(self) -> str:
        return f"PseudonymKey(fingerprint={self._fingerprint!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PseudonymKey):
            return NotImplemented
        return hmac.compare_digest(self.secret, other.secret)

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __reduce_ex__(self, protocol: object) -> object:
        raise TypeError(
            "a PseudonymKey is not picklable, so that it cannot be written to a cache or a "
            "file by accident; load it with load_key() where it is needed"
        )

    def __copy__(self) -> PseudonymKey:
        return self  # immutable

    def __deepcopy__(self, memo: object) -> PseudonymKey:
        return self


def _namespace_prefix(namespace: str) -> bytes:
    if not isinstance(namespace, str) or not namespace or "\x00" in namespace:
        # A NUL inside the namespace would make ("a\x00b", "c") and ("a", "b\x00c") collide.
        raise ValueError("namespace must be a non-empty str without NUL characters")
    return namespace.encode("utf-8") + b"\x00"


def _inside_git_work_tree(path: Path) -> Path | None:
    """Return the work-tree root holding ``path`` (a ``.git`` dir or file above it), if any."""
    for parent in [path, *path.parents]:
        # A .git *file* marks a linked worktree or a submodule; both are work trees.
        if (parent / ".git").exists():
            return parent
    return None


def _make_private_dirs(directory: Path) -> None:
    missing = []
    for parent in [directory, *directory.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for d in reversed(missing):
        d.mkdir(mode=0o700)
        # mkdir's mode is filtered by the umask; set it explicitly.
        os.chmod(d, 0o700)


def write_key(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    allow_in_repo: bool = False,
    key: bytes | None = None,
) -> str:
    """Generate a key (or take ``key``) and write it to ``path`` as hex, readable by the owner.

    The file holds 64 hex characters and a newline and gets mode 0o600; missing parent
    directories are created with mode 0o700. The write is atomic (temporary file, then
    rename), so an interrupted write never leaves a truncated key behind.

    Parameters
    ----------
    path
        Where to write, e.g. ``~/.config/trackii_eval/<study>.key`` (``~`` is expanded).
    overwrite
        Replace an existing file. Off by default: overwriting a study's key makes every later
        wave unlinkable to the pseudonyms already stored.
    allow_in_repo
        Allow a path inside a git work tree. Off by default: a key in a repository is one
        ``git add -A`` away from being published with the data it protects.
    key
        Key bytes to write instead of a new random key (for example to restore a backup).

    Returns
    -------
    str
        The fingerprint of the key written (safe to print).

    Raises
    ------
    IngestError
        If the file exists and ``overwrite`` is false, or the path is inside a git work tree
        and ``allow_in_repo`` is false.

    References
    ----------
    .. [1] NIST SP 800-57 Part 1 Rev. 5 (2020). Recommendation for Key Management, section 6
       (protection of keying material).
    """
    target = Path(path).expanduser().absolute()
    secret = generate_key() if key is None else key
    pkey = PseudonymKey(secret)  # validates the length
    if not allow_in_repo:
        repo = _inside_git_work_tree(target.parent)
        if repo is not None:
            raise IngestError(
                f"{target}: refusing to write a pseudonymization key inside the git work tree "
                f"at {repo}; a committed key would let anyone re-identify the pseudonyms. Write "
                "it outside, e.g. ~/.config/trackii_eval/<study>.key (or pass "
                "allow_in_repo=True if you really mean it)"
            )
    if target.exists() and not overwrite:
        raise IngestError(
            f"{target}: a key file already exists; refusing to overwrite it. Overwriting a "
            "study's key makes new waves unlinkable to the pseudonyms already stored"
        )
    _make_private_dirs(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=".key-", dir=target.parent)  # mkstemp creates with 0o600
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(pkey.secret.hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            # link() fails if the target appeared meanwhile: no check-then-write race.
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise IngestError(
                    f"{target}: a key file already exists; refusing to overwrite it"
                ) from None
            except OSError:
                # Filesystems without hard links: fall back to an exclusive create.
                fd2 = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd2, "w", encoding="ascii") as fh:
                    fh.write(pkey.secret.hex() + "\n")
                os.chmod(target, 0o600)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return pkey.fingerprint


def _check_permissions(path: Path, strict: bool) -> None:
    if os.name != "posix":
        return  # POSIX modes do not describe Windows ACLs
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        message = (
            f"{path}: the key file is readable or writable by group/others (mode {mode:#o}); "
            f"anyone who can read it can re-identify pseudonyms. Fix with: chmod 600 {path}"
        )
        if strict:
            raise IngestError(message)
        warnings.warn(message, TrackIIEvalWarning, stacklevel=3)


def _read_key_file(path: Path, source: str, strict_permissions: bool) -> PseudonymKey:
    if not path.is_file():
        raise KeyMissingError(f"{source}: no key file at {path}.\n{_KEY_HELP}")
    _check_permissions(path, strict_permissions)
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise IngestError(
            f"{path}: the key file is not the hex text written by `trackii-eval keygen`"
        ) from None
    try:
        return PseudonymKey.from_hex(text)
    except IngestError as exc:
        raise IngestError(f"{path}: {exc}") from None


def load_key(
    path: str | os.PathLike[str] | None = None,
    *,
    env_var: str = "TRACKII_EVAL_KEY",
    env_file_var: str = "TRACKII_EVAL_KEY_FILE",
    strict_permissions: bool = False,
) -> PseudonymKey:
    """Load the study's pseudonymization key.

    Sources, first found wins: the explicit ``path``; the environment variable ``env_var``
    holding the key as 64 hex characters; the environment variable ``env_file_var`` naming a
    key file. A key file is preferred over ``env_var``: environment variables are visible to
    other processes of the same user and end up in shell histories. If ``env_var`` and
    ``env_file_var`` are both set they must hold the same key, because silently using a
    different key would make every participant look new.

    Parameters
    ----------
    path
        A key file written by :func:`write_key` (``~`` is expanded).
    env_var, env_file_var
        Names of the environment variables to consult.
    strict_permissions
        Refuse (rather than warn about) a key file that group or others can read or write.

    Returns
    -------
    PseudonymKey
        The key.

    Raises
    ------
    KeyMissingError
        If no source provides a key; the message says how to create one and what losing it
        means.
    IngestError
        If a key is malformed, or the two environment variables disagree.

    Warns
    -----
    TrackIIEvalWarning
        If the key file's permissions let group or others read or write it.

    References
    ----------
    .. [1] NIST SP 800-57 Part 1 Rev. 5 (2020). Recommendation for Key Management.
    """
    if path is not None:
        return _read_key_file(Path(path).expanduser(), "key file", strict_permissions)
    from_env = os.environ.get(env_var, "").strip()
    file_env = os.environ.get(env_file_var, "").strip()
    key_from_var = None
    if from_env:
        try:
            key_from_var = PseudonymKey.from_hex(from_env)
        except IngestError as exc:
            raise IngestError(f"environment variable {env_var}: {exc}") from None
    if file_env:
        key_from_file = _read_key_file(
            Path(file_env).expanduser(), f"environment variable {env_file_var}", strict_permissions
        )
        if key_from_var is not None and key_from_var != key_from_file:
            raise IngestError(
                f"{env_var} and {env_file_var} hold different keys (fingerprints "
                f"{key_from_var.fingerprint} and {key_from_file.fingerprint}); unset one"
            )
        return key_from_file
    if key_from_var is not None:
        return key_from_var
    raise KeyMissingError(
        f"no pseudonymization key: no key file was given and neither {env_var} nor "
        f"{env_file_var} is set.\n{_KEY_HELP}"
    )
