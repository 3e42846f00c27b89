"""Exceptions raised by :mod:`clientlib.keystore`, all subclasses of ``KeystoreError``.

The tree::

    KeystoreError (clientlib.errors)
    +-- WrongPassphrase             AEAD authentication failed: wrong passphrase OR tampering
    +-- WeakPassphrase              create/change_passphrase refused a guessable passphrase
    +-- CorruptKeystore             truncated file, bad magic, bad parameters, malformed body
    +-- UnsupportedKeystoreVersion  the file was written by a newer blindrelay
    +-- KeystoreExists              create() over an existing file
    +-- KeystoreNotFound            open() of a missing file
    +-- KeystoreLocked              another handle (process) holds the keystore's lock
    +-- KeystoreClosed              the handle was closed or wiped

Messages name the failed invariant only: never the passphrase, the key, paths or contents.
"""

from __future__ import annotations

from clientlib.errors import KeystoreError

__all__ = [
    "CorruptKeystore",
    "KeystoreClosed",
    "KeystoreError",
    "KeystoreExists",
    "KeystoreLocked",
    "KeystoreNotFound",
    "UnsupportedKeystoreVersion",
    "WeakPassphrase",
    "WrongPassphrase",
]


class WrongPassphrase(KeystoreError):
    """The file did not authenticate under the derived key.

    A wrong passphrase and a modified ciphertext are indistinguishable by design (AEAD), so
    the message says both.
    """

    def __init__(self) -> None:
        super().__init__("cannot decrypt keystore: wrong passphrase or corrupted file")


class WeakPassphrase(KeystoreError):
    """A new passphrase is too easy to guess (:mod:`clientlib.keystore.policy`).

    The message says why and what is required; it never contains the passphrase. Nothing
    was written.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"passphrase too weak: {reason}. {REQUIREMENT}")
        self.reason = reason


#: What the policy asks for, in words (kept in step with clientlib.keystore.policy).
REQUIREMENT = (
    "Use at least 12 characters that a strength estimator (zxcvbn) rates 3 of 4 or more, "
    "for example four or more random words"
)


class CorruptKeystore(KeystoreError):
    """The file is not a well-formed keystore (detected without or after decryption)."""


class UnsupportedKeystoreVersion(KeystoreError):
    """The file's format version is newer than this library supports."""

    def __init__(self, version: int, supported: int) -> None:
        super().__init__(
            f"keystore format version {version} was created by a newer version of blindrelay "
            f"(this version supports up to {supported})"
        )
        self.version = version
        self.supported = supported


class KeystoreExists(KeystoreError):
    """``create`` refused to overwrite an existing keystore file."""

    def __init__(self) -> None:
        super().__init__("a keystore file already exists at this path; refusing to overwrite")


class KeystoreNotFound(KeystoreError):
    """``open`` was given a path with no keystore file."""

    def __init__(self) -> None:
        super().__init__("no keystore file at this path")


class KeystoreLocked(KeystoreError):
    """Another open handle (usually another process) holds this keystore."""

    def __init__(self) -> None:
        super().__init__("keystore is in use by another process")


class KeystoreClosed(KeystoreError):
    """The handle was closed or wiped and can no longer be used."""

    def __init__(self) -> None:
        super().__init__("keystore is closed")
