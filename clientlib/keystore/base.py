"""The :class:`Keystore` interface and the entry table its implementations share.

A keystore is a two-level map ``namespace (str) -> key (bytes) -> value (bytes)`` of opaque
blobs: identity seed, prekey private bytes, ``SessionRecord.to_bytes()``, contacts, pending
outbound state. It does not interpret the values; callers own their encodings.

Mutations (``put``/``delete``) change memory only; ``save()`` makes them durable. ``save`` is
synchronous on purpose: the file is small (kilobytes to a few megabytes), the write is one
atomic replace plus two ``fsync`` calls, and an async client can run it with
``asyncio.to_thread`` when it matters. Key derivation happens once at open, not per save.
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

__all__ = ["MAX_NAMESPACE_SIZE", "Keystore"]

#: Namespaces are short labels chosen by the client ("identity", "sessions", ...), not data.
MAX_NAMESPACE_SIZE: Final = 255


@runtime_checkable
class Keystore(Protocol):
    """Secret storage for the client: opaque byte blobs grouped into namespaces.

    Every method raises :class:`~clientlib.keystore.errors.KeystoreClosed` after
    :meth:`close` or :meth:`wipe`, ``TypeError`` for a ``str`` where ``bytes`` is expected
    (and vice versa), and ``ValueError`` for an empty or over-long namespace.
    """

    def get(self, namespace: str, key: bytes) -> bytes | None:
        """Return the value stored under ``(namespace, key)``, or ``None``."""
        ...

    def put(self, namespace: str, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``(namespace, key)``, replacing any previous value."""
        ...

    def delete(self, namespace: str, key: bytes) -> None:
        """Remove ``(namespace, key)``; deleting a missing entry is not an error."""
        ...

    def items(self, namespace: str) -> list[tuple[bytes, bytes]]:
        """Every ``(key, value)`` in ``namespace``, sorted by key (empty if none)."""
        ...

    def save(self) -> None:
        """Make every change so far durable (synchronous; see the module docstring)."""
        ...

    def wipe(self) -> None:
        """Destroy the stored data (overwrite, then unlink for files) and close the handle."""
        ...

    def close(self) -> None:
        """Drop the in-memory contents and key and release any lock. Unsaved changes are lost.

        Idempotent.
        """
        ...


def check_entry(namespace: object, key: object, value: object = b"") -> None:
    """Validate argument types for a keystore operation (a caller bug raises, never coerces)."""
    if type(namespace) is not str:
        raise TypeError("namespace must be str")
    if not 0 < len(namespace.encode("utf-8")) <= MAX_NAMESPACE_SIZE:
        raise ValueError("namespace must be 1..255 bytes of UTF-8")
    if type(key) is not bytes:
        raise TypeError("key must be bytes")
    if type(value) is not bytes:
        raise TypeError("value must be bytes")


class EntryTable:
    """The in-memory ``namespace -> key -> value`` table (no empty namespaces are kept)."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, dict[bytes, bytes]] | None = None) -> None:
        self._data: dict[str, dict[bytes, bytes]] = {
            ns: dict(entries) for ns, entries in (data or {}).items() if entries
        }

    def get(self, namespace: str, key: bytes) -> bytes | None:
        check_entry(namespace, key)
        return self._data.get(namespace, {}).get(key)

    def put(self, namespace: str, key: bytes, value: bytes) -> None:
        check_entry(namespace, key, value)
        self._data.setdefault(namespace, {})[key] = value

    def delete(self, namespace: str, key: bytes) -> None:
        check_entry(namespace, key)
        entries = self._data.get(namespace)
        if entries is not None:
            entries.pop(key, None)
            if not entries:
                del self._data[namespace]

    def items(self, namespace: str) -> list[tuple[bytes, bytes]]:
        check_entry(namespace, b"")
        return sorted(self._data.get(namespace, {}).items())

    def snapshot(self) -> dict[str, dict[bytes, bytes]]:
        """A deterministic (sorted) copy, for serialisation."""
        return {ns: dict(sorted(self._data[ns].items())) for ns in sorted(self._data)}

    def clear(self) -> None:
        self._data.clear()

    def __repr__(self) -> str:
        return "<EntryTable [secret]>"
