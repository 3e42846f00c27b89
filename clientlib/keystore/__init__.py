"""Client secret storage: one encrypted file holding keys, sessions, contacts and pending state.

:class:`Keystore` is the interface; :class:`FileKeystore` is the at-rest encrypted
implementation (format in :mod:`clientlib.keystore.file`); :class:`InMemoryKeystore` is for
tests.
"""

from __future__ import annotations

from clientlib.keystore.base import MAX_NAMESPACE_SIZE, Keystore
from clientlib.keystore.errors import (
    CorruptKeystore,
    KeystoreClosed,
    KeystoreError,
    KeystoreExists,
    KeystoreLocked,
    KeystoreNotFound,
    UnsupportedKeystoreVersion,
    WeakPassphrase,
    WrongPassphrase,
)
from clientlib.keystore.file import KEYSTORE_VERSION, MAX_KEYSTORE_SIZE, FileKeystore
from clientlib.keystore.memory import InMemoryKeystore
from clientlib.keystore.policy import MIN_PASSPHRASE_LENGTH, MIN_SCORE, check_passphrase_strength

__all__ = [
    "KEYSTORE_VERSION",
    "MAX_KEYSTORE_SIZE",
    "MAX_NAMESPACE_SIZE",
    "MIN_PASSPHRASE_LENGTH",
    "MIN_SCORE",
    "CorruptKeystore",
    "FileKeystore",
    "InMemoryKeystore",
    "Keystore",
    "KeystoreClosed",
    "KeystoreError",
    "KeystoreExists",
    "KeystoreLocked",
    "KeystoreNotFound",
    "UnsupportedKeystoreVersion",
    "WeakPassphrase",
    "WrongPassphrase",
    "check_passphrase_strength",
]
