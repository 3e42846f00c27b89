"""Consent to join a group (protocol.md §26.6): invitations, acceptance, declines, and the
pairwise contents that carry them, beside :class:`~clientlib.client._groups.Groups`, which
owns the records. An invitation alone gives nothing: the invitee has no group mailbox and
receives nothing until it accepts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgpack

from clientlib.client._book import credential
from clientlib.client._group_records import GroupRecord, _Live, _pack, _unpack
from clientlib.client.content import GroupPairwise
from clientlib.client.types import ClientEvent, ClientWarning, GroupEvent, GroupInfo
from clientlib.crypto.group import GroupError, GroupKeys, GroupState, Member
from clientlib.errors import LocalProtocolError
from clientlib.wire import delegate_hash

if TYPE_CHECKING:
    from clientlib.client._groups import Groups

__all__ = ["GroupConsent"]

INVITES = "ginvites"


class GroupConsent:
    """Invitations of one client's groups (see the module docstring)."""

    def __init__(self, groups: Groups) -> None:
        self._g = groups

    async def invite(self, gid: bytes, cid: bytes) -> None:
        """Invite a contact; it receives nothing of the group until it accepts (§26.6)."""
        book = self._g._book
        g = self._g.live[gid]
        if g.state.role_of(g.me) not in ("owner", "admin"):
            raise LocalProtocolError("only admins invite")
        c = book.contacts[cid]
        if c.state != "accepted":
            raise LocalProtocolError("the contact has not accepted us yet")
        if any(m.ik == c.identity for m in g.state.members.values()):
            raise LocalProtocolError("already a member")
        body = _pack(["inv", gid, g.state.name, g.me, g.rec.name])
        async with book.lock:
            g.rec.invited[cid] = gid
            self._g._put(g)
            self._g._seal_pairwise(cid, GroupPairwise(body=body).encode())
            await book.save()
        self._g._wake()

    async def accept(self, invite_id: bytes) -> GroupInfo:
        """Accept an invitation: a group mailbox and keys of our own, then our member record
        to the inviter, who adds us and sends the welcome (§26.6)."""
        book = self._g._book
        inv = self._g.invites.get(invite_id)
        if inv is None:
            raise LocalProtocolError("no such invitation")
        cid, gid, name, inviter, _ = inv
        if gid in self._g.live and self._g.live[gid].rec.status in ("joining", "active"):
            raise LocalProtocolError("already in this group")
        keys, owner = GroupKeys.generate(book.rng), book.rng(32)
        rid, sid = await self._g._create_mailbox(owner)
        # The inviter adds this epoch's capability as our delegate before its welcome.
        await self._g._link.transport().set_caps(
            credential(rid, owner), add=[delegate_hash(sid, inviter)]
        )
        me = Member(bytes(book.identity.public), keys.gpk, keys.xpk, sid, "member", book.name)
        rec = GroupRecord(
            gid, keys.sign_seed, keys.dh_private, rid, sid, owner, book.name, "joining"
        )
        rec.inviter, rec.via = inviter, cid
        g = _Live(rec, GroupState(gid=gid))
        g.state.name = name
        async with book.lock:
            self._g.live[gid] = g
            book.add_group_mailbox(rid, gid, owner)
            self._g._put(g)
            del self._g.invites[invite_id]
            book.ks.delete(INVITES, invite_id)
            self._g._seal_pairwise(
                cid, GroupPairwise(body=_pack(["join", gid, me.encode()])).encode()
            )
            await book.save()
        await self._g._link.subscribe(rid)
        self._g._wake()
        return self._g.info(gid)

    async def decline(self, invite_id: bytes) -> None:
        book = self._g._book
        inv = self._g.invites.get(invite_id)
        if inv is None:
            raise LocalProtocolError("no such invitation")
        async with book.lock:
            del self._g.invites[invite_id]
            book.ks.delete(INVITES, invite_id)
            if inv[0] in book.contacts:
                self._g._seal_pairwise(inv[0], GroupPairwise(body=_pack(["decl", inv[1]])).encode())
            await book.save()
        self._g._wake()

    def on_pairwise(self, cid: bytes, body: bytes, events: list[ClientEvent]) -> None:
        """An invitation, join or decline inside a pairwise session with contact ``cid``."""
        try:
            msg = _unpack(body)
            kind = msg[0]
        except (ValueError, TypeError, IndexError, msgpack.ExtraData, msgpack.FormatError):
            events.append(ClientWarning("malformed_content", "group", cid.hex()))
            return
        book = self._g._book
        if kind == "inv" and len(msg) == 5:
            _, gid, name, gpk, inviter = msg
            if gid in self._g.live and self._g.live[gid].rec.status in ("joining", "active"):
                return
            iid = book.rng(16)
            self._g.invites[iid] = [cid, gid, name, gpk, inviter]
            book.ks.put(INVITES, iid, _pack(self._g.invites[iid]))
            events.append(
                GroupEvent(gid.hex(), "invited", member=inviter, text=name, invite_id=iid.hex())
            )
        elif kind == "join" and len(msg) == 3:
            gid = msg[1]
            g = self._g.live.get(gid)
            if g is None or g.rec.invited.get(cid) != gid:
                events.append(
                    ClientWarning("forged_reference", "group join not invited", cid.hex())
                )
                return
            try:
                member = Member.decode(msg[2])
            except GroupError:
                events.append(ClientWarning("malformed_content", "group join", cid.hex()))
                return
            if member.ik != book.contacts[cid].identity:
                events.append(ClientWarning("forged_reference", "group join identity", cid.hex()))
                return
            self._g._run(self._g._add(gid, cid, member))
        elif kind == "decl" and len(msg) == 2:
            g = self._g.live.get(msg[1])
            if g is not None and g.rec.invited.pop(cid, None) is not None:
                self._g._put(g)
                events.append(GroupEvent(msg[1].hex(), "declined", member=book.contacts[cid].name))
        else:
            events.append(ClientWarning("malformed_content", "group", cid.hex()))
