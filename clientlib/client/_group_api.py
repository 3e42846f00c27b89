"""The groups part of :class:`~clientlib.client.Client` (protocol.md §26): a mixin, so
that the facade stays short; the logic is in ``_groups`` and ``_group_extras``."""

from __future__ import annotations

from clientlib.client._book import AddressBook, ContactRef
from clientlib.client._group_reports import received_evidence
from clientlib.client._groups import Groups
from clientlib.client._reports import Reports
from clientlib.client.types import GroupEvent, GroupInfo, GroupMember
from clientlib.errors import LocalProtocolError

__all__ = ["GroupsMixin"]


class GroupsMixin:
    """Methods of :class:`~clientlib.client.Client` (documented here); the attributes are
    the client's."""

    _groups: Groups
    _book: AddressBook
    _reports: Reports

    def groups(self) -> list[GroupInfo]:
        """Every group we are in, joining, have left or were removed from."""
        return self._groups.all()

    def group(self, ref: str) -> GroupInfo:
        """A group by id (hex or a 4+ character prefix) or name."""
        return self._groups.info(self._groups.resolve(ref))

    async def create_group(self, name: str) -> GroupInfo:
        """A new group with us as its owner."""
        return await self._groups.create(name)

    async def invite_to_group(self, group: str, contact: ContactRef) -> None:
        """Invite a contact (it gets nothing of the group until it accepts)."""
        await self._groups.consent.invite(
            self._groups.resolve(group), self._book.resolve_contact(contact)
        )

    def group_invitations(self) -> list[tuple[str, str, str]]:
        """``(invite id, group name, inviter)`` of every pending invitation."""
        return self._groups.invitations()

    async def accept_group(self, invite_id: str) -> GroupInfo:
        return await self._groups.consent.accept(_invite(self._groups, invite_id))

    async def decline_group(self, invite_id: str) -> None:
        await self._groups.consent.decline(_invite(self._groups, invite_id))

    async def send_group(self, group: str, text: str) -> GroupEvent:
        """One message to the group: encrypted once, uploaded once."""
        return await self._groups.send(self._groups.resolve(group), text)

    async def group_typing(self, group: str, active: bool = True) -> bool:
        """Tell the group we are typing (``active``) or stopped (protocol.md §26.8): call it
        as often as you like, what goes out is throttled as for a contact (a start, a
        keep-alive at most every 5 s, a stop). Online-only: members not connected never see
        it and the relay stores nothing. Sent only while our typing setting for the group is
        on (:meth:`set_group_typing`). Best effort: True if an indicator left."""
        return await self._groups.extras.typing(self._groups.resolve(group), active)

    async def set_group_typing(self, group: str, on: bool) -> None:
        """Our typing setting for a group (default on): off, we neither send indicators nor
        show the members'. It is ours alone; members see only that none arrive."""
        await self._groups.extras.set_typing(self._groups.resolve(group), on)

    async def mark_group_read(self, group: str, ids: list[str] | None = None) -> int:
        """Mark received group messages read (``ids``: message ids in hex; default: all):
        a read receipt goes to each author alone, batched and delayed as for a contact
        (protocol.md §26.8), while our receipts setting for the group is on. Returns how
        many were newly marked."""
        want = None if ids is None else [bytes.fromhex(i) for i in ids]
        return await self._groups.extras.mark_read(self._groups.resolve(group), want)

    async def set_group_receipts(self, group: str, on: bool) -> None:
        """Our receipts setting for a group (default on): off, we send no delivery or read
        receipts to its members and keep none of theirs."""
        await self._groups.extras.set_receipts(self._groups.resolve(group), on)

    def group_receipts(self, group: str, message_id: str) -> list[tuple[str, str]]:
        """Who got (``delivered``) or read (``read``) one of our group messages."""
        return self._groups.extras.receipts_of(
            self._groups.resolve(group), bytes.fromhex(message_id)
        )

    def group_members(self, group: str) -> list[GroupMember]:
        return self._groups.members(self._groups.resolve(group))

    def group_messages(self, group: str) -> list[GroupEvent]:
        return self._groups.messages(self._groups.resolve(group))

    async def report_group_message(
        self, group: str, message_id: str, reason: str, *, note: str | None = None
    ) -> str:
        """Report a received group message to the relay's moderators from our mailbox in
        that group, verified as :meth:`report` (protocol.md §26.9). The operator sees the
        message, the sender's per-group key and the group point, not identity keys; the
        group's admins, not the relay, remove a member (:meth:`remove_from_group`).

        Raises:
            LocalProtocolError: no such received text, not reportable, or no group mailbox.
            RelayRejected: ``FRANKING``, ``EXPIRED``, ``DUPLICATE``, ``QUOTA``, ``MALFORMED``.
        """
        gid = self._groups.resolve(group)
        mid, evidence = received_evidence(self._groups.live[gid], message_id)
        return await self._reports.report_group(gid, mid, evidence, reason, note=note)

    async def remove_from_group(self, group: str, member: str) -> None:
        """Remove a member (by contact, name or id); everyone moves to a new epoch."""
        gid = self._groups.resolve(group)
        await self._groups.remove(gid, self._groups.member_gpk(gid, member))

    async def leave_group(self, group: str) -> None:
        await self._groups.leave(self._groups.resolve(group))

    async def set_group_role(self, group: str, member: str, role: str) -> None:
        gid = self._groups.resolve(group)
        await self._groups.set_role(gid, self._groups.member_gpk(gid, member), role)

    async def set_group_settings(
        self,
        group: str,
        *,
        post: str | None = None,
        media: bool | None = None,
        ttl: int | None = None,
    ) -> None:
        await self._groups.set_settings(
            self._groups.resolve(group), post=post, media=media, ttl=ttl
        )


def _invite(groups: Groups, ref: str) -> bytes:
    k = ref.strip().lower()
    found = [
        bytes.fromhex(i) for i, _, _ in groups.invitations() if i.startswith(k) and len(k) >= 4
    ]
    if len(found) != 1:
        raise LocalProtocolError("no such invitation" if not found else "ambiguous invitation")
    return found[0]
