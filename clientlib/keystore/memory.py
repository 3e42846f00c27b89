"""In-memory :class:`~clientlib.keystore.base.Keystore` for tests (nothing touches disk)."""

from __future__ import annotations

from clientlib.keystore.base import EntryTable
from clientlib.keystore.errors import KeystoreClosed

__all__ = ["InMemoryKeystore"]


class InMemoryKeystore:
    """A :class:`~clientlib.keystore.base.Keystore` held in a dict.

    ``save()`` only counts calls (``save_count``) so tests can assert that the client
    persists at the right moments.
    """

    __slots__ = ("_closed", "_table", "save_count")

    def __init__(self) -> None:
        self._table = EntryTable()
        self._closed = False
        self.save_count = 0

    def _live(self) -> EntryTable:
        if self._closed:
            raise KeystoreClosed
        return self._table

    def get(self, namespace: str, key: bytes) -> bytes | None:
        return self._live().get(namespace, key)

    def put(self, namespace: str, key: bytes, value: bytes) -> None:
        self._live().put(namespace, key, value)

    def delete(self, namespace: str, key: bytes) -> None:
        self._live().delete(namespace, key)

    def items(self, namespace: str) -> list[tuple[bytes, bytes]]:
        return self._live().items(namespace)

    def save(self) -> None:
        self._live()
        self.save_count += 1

    def wipe(self) -> None:
        self._live()
        self.close()

    def close(self) -> None:
        self._table.clear()
        self._closed = True

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<InMemoryKeystore {state}>"

    __str__ = __repr__
