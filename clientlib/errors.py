"""Exceptions raised by clientlib.

The tree (every exception derives from :class:`MessagingError`)::

    MessagingError
    +-- LocalProtocolError        the caller misused the API (a bug on our side of the wire)
    +-- RemoteProtocolError       the peer (relay or contact) sent something invalid
    |   +-- WireError             a frame or structure failed to decode; carries ``code``
    |       +-- UnsupportedVersion    leading version byte not in the supported range
    |       +-- FrameTooLarge         input longer than the applicable limit
    +-- DecryptionError           every decryption / authentication failure, one fixed message
    |   +-- AttachmentCorrupt     a downloaded attachment failed its checks (one fixed message)
    +-- KeyValidationError        a received public key is malformed, small-order or non-canonical
    +-- SessionError              a session cannot proceed (state machine misuse, limits)
    +-- KeystoreError             the local keystore cannot be opened or written
    +-- TransportError            the relay is unreachable or answered with an error
        +-- RelayRejected         the relay answered with a wire error code (``code``)

Messages name the violated invariant, never a secret value.
"""

from __future__ import annotations

__all__ = [
    "AttachmentCorrupt",
    "DecryptionError",
    "FrameTooLarge",
    "KeyValidationError",
    "KeystoreError",
    "LocalProtocolError",
    "MessagingError",
    "RelayRejected",
    "RemoteProtocolError",
    "SafetyNumberMismatch",
    "SessionError",
    "TransportError",
    "UnsupportedVersion",
    "WireError",
]


class MessagingError(Exception):
    """Root of every exception clientlib raises on purpose."""


class LocalProtocolError(MessagingError):
    """The caller asked for something the protocol does not allow."""


class RemoteProtocolError(MessagingError):
    """The remote side sent something the protocol does not allow.

    Attributes:
        code: the wire error code (a ``clientlib.wire.ErrorCode`` value) that
            describes the problem, suitable for sending back to the peer.
    """

    code: str = "MALFORMED"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class WireError(RemoteProtocolError):
    """Bytes that do not decode as a valid v1 structure."""


class UnsupportedVersion(WireError):
    """The leading version byte is reserved (0) or outside the supported range."""

    code = "VERSION"

    def __init__(self, version: int, supported: tuple[int, int]) -> None:
        super().__init__(
            f"unsupported protocol version {version}; supported {supported[0]}..{supported[1]}"
        )
        self.version = version
        self.supported = supported


class FrameTooLarge(WireError):
    """The input is longer than the limit that applies to it."""

    code = "TOO_LARGE"


class DecryptionError(MessagingError):
    """Any failure to decrypt or authenticate a message.

    The message is always the same so that no caller can build an oracle from it.
    """

    def __init__(self) -> None:
        super().__init__("decryption failed")


class AttachmentCorrupt(DecryptionError):
    """A downloaded attachment is truncated, extended, reordered, substituted, tampered with
    or does not match its descriptor (protocol.md §25.2). Nothing is written in its place."""

    def __init__(self) -> None:
        Exception.__init__(self, "the attachment is corrupt, truncated or tampered with")


class KeyValidationError(MessagingError):
    """A received public key failed validation (length, encoding or small order)."""


class SessionError(MessagingError):
    """A session state machine cannot perform the requested step."""


class KeystoreError(MessagingError):
    """The keystore cannot be opened, decrypted, parsed or written."""


class TransportError(MessagingError):
    """The relay could not be reached, or the connection failed."""


class RelayRejected(TransportError):
    """The relay answered a request with a wire error code."""

    def __init__(self, code: str, message: str = "") -> None:
        detail = f" ({message})" if message else ""
        super().__init__(f"relay rejected the request: {code}{detail}")
        self.code = code


class SafetyNumberMismatch(MessagingError):
    """A scanned safety-number payload does not match the two identities compared."""
