"""The account-security part of :class:`~clientlib.client.Client`: linked devices, backups,
passphrase changes and the duress passphrase (protocol.md §23.4, §23.6, §24). A mixin, so
that the facade stays short; the logic is in ``_devices``, ``_linking`` and ``_security``.
"""

from __future__ import annotations

import asyncio
import os

from clientlib.client._book import AddressBook
from clientlib.client._contacts import ContactOps
from clientlib.client._devices import Renewal, backup_contents
from clientlib.client._link import Link
from clientlib.client._linking import (
    DeviceApproval,
    DeviceLinker,
    finish_approval,
    remove_device,
    start_approval,
)
from clientlib.client._outbox import Outbox
from clientlib.client.config import ClientConfig, KdfStrength
from clientlib.client.types import ClientEvent, Device, DeviceLinked, DeviceRemoved

__all__ = ["AccountMixin"]


class AccountMixin:
    """Methods of :class:`~clientlib.client.Client` (documented there by their own
    docstrings); the attributes are the client's."""

    _book: AddressBook
    _link: Link
    _ops: ContactOps
    _outbox: Outbox
    _renewal: Renewal
    _config: ClientConfig

    def _now(self) -> int:
        raise NotImplementedError

    def _emit(self, ev: ClientEvent) -> None:
        raise NotImplementedError

    # --- public: devices (protocol.md §24.5-§24.7) ---------------------------------------

    @staticmethod
    def link_device(relay_url: str, *, config: ClientConfig | None = None) -> DeviceLinker:
        """Start linking this machine as a new device of an identity held elsewhere: an
        async context manager that shows a link code, waits for the approving device and
        returns the new client (see :class:`~clientlib.client.DeviceLinker`)."""
        return DeviceLinker(relay_url, config=config)

    def devices(self) -> list[Device]:
        """Our devices, as in the signed device list (at most ``MAX_DEVICES``)."""
        return self._renewal.devices()

    async def start_device_approval(self, code: str) -> DeviceApproval:
        """Answer a new device's link code. Show ``approval.sas`` and compare it with the
        code the new device shows, then call :meth:`approve_device`.

        Raises:
            LinkError: the code is malformed, expired, already used or for another relay.
        """
        return await start_approval(self._book, self._link, code, now=self._now())

    async def approve_device(
        self, approval: DeviceApproval, sas: str, *, name: str = "new device"
    ) -> Device:
        """Transfer the identity, contacts and settings to the new device if ``sas`` (what
        the user read on the new device) is the approval's code; sign the new device list
        and tell every contact and our other devices.

        Raises:
            LinkError: the codes differ (nothing was sent), the code expired or was used,
                or the device limit is reached.
        """
        await self._ops.refresh_moderator_keys()  # the list updates are franked
        dev = await finish_approval(
            self._book,
            self._link,
            self._renewal,
            self._ops.seal_and_queue,
            self._ops.create_pairwise,
            approval,
            sas,
            name=name,
            now=self._now(),
        )
        self._outbox.wake()
        self._emit(DeviceLinked(dev))
        return dev

    async def remove_device(self, device_id: str) -> Device:
        """Remove another device from our signed list: contacts stop sending to it and stop
        accepting from it as soon as the new list reaches them (protocol.md §24.7).

        Raises:
            LocalProtocolError: no such device, or it is this one.
        """
        await self._ops.refresh_moderator_keys()
        dev = await remove_device(self._book, self._renewal, self._ops.seal_and_queue, device_id)
        self._outbox.wake()
        self._emit(DeviceRemoved(dev))
        return dev

    # --- public: backup (protocol.md §24.3) ----------------------------------------------

    async def backup(self, path: str | os.PathLike[str]) -> str:
        """Write an encrypted backup of the identity, accepted contacts, active groups and
        settings (no history, no sessions, no sender chain of ours) to the new file ``path``
        (mode 0600).

        Returns:
            The recovery key as 24 words: the only way to open the backup. Show it once;
            it is not stored anywhere.

        Raises:
            FileExistsError: ``path`` exists (it is not touched).
        """
        from clientlib.client.backup import recovery_words, seal_backup, write_backup

        key = self._config.rng(32)
        async with self._book.lock:
            contents = backup_contents(self._book, now=self._now())
        data = seal_backup(contents, key, self._config.rng)
        await asyncio.to_thread(write_backup, path, data)
        return recovery_words(key)

    # --- public: passphrase and duress (protocol.md §23.4, §23.6) ------------------------

    async def change_passphrase(
        self,
        new_passphrase: bytes | str,
        *,
        kdf_strength: KdfStrength | None = None,
        allow_weak: bool = False,
    ) -> None:
        """Re-encrypt the keystore under a new passphrase, atomically (the file is replaced
        in one rename; a crash leaves the old or the new file, never a mix).

        ``kdf_strength`` also moves the keystore to that Argon2id cost (``moderate`` or
        ``interactive``; default: keep the current cost). ``allow_weak``: accept a
        passphrase the strength policy refuses (at least 8 characters).

        Raises:
            WeakPassphrase: refused by the policy; nothing changed.
            ValueError: the new passphrase is the duress passphrase, or a cost change while a
                duress passphrase is set.
            LocalProtocolError: an in-memory client.
        """
        from clientlib.client import _security
        from clientlib.client.config import argon2_costs

        new = new_passphrase.encode() if isinstance(new_passphrase, str) else new_passphrase
        costs = argon2_costs(kdf_strength) if kdf_strength is not None else None
        await _security.change_passphrase(self._book, new, costs=costs, allow_weak=allow_weak)

    async def set_duress(
        self,
        passphrase: bytes | str,
        *,
        wipe: bool = False,
        decoy_name: str = "",
        allow_weak: bool = False,
    ) -> None:
        """Set a duress passphrase. Opening the keystore with it shows a decoy: a client
        with a fresh identity on the same relay and no contacts (``decoy_name`` its
        display name). With ``wipe``, that open also destroys this keystore and its
        history and leaves the decoy in its place. From the outside (file sizes, the time
        an open takes) a keystore with a duress passphrase looks like one without
        (protocol.md §23.6). Replaces an earlier duress passphrase.

        Raises:
            WeakPassphrase: refused by the policy.
            ValueError: it is the keystore's own passphrase, or this is a decoy.
            LocalProtocolError: an in-memory client.
        """
        from clientlib.client import _security

        secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
        await _security.set_duress(
            self._book, secret, wipe=wipe, name=decoy_name, allow_weak=allow_weak
        )

    async def clear_duress(self) -> None:
        """Remove the duress passphrase (nothing else changes)."""
        from clientlib.client import _security

        await _security.clear_duress(self._book)
