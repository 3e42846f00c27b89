"""The keystore record of one group (namespace ``groups``) and its live form: the group's
state rebuilt from the log (protocol.md §26; used by :mod:`clientlib.client._groups`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from clientlib.crypto.group import GroupKeys, GroupState

__all__ = ["GroupRecord", "_Live", "_pack", "_unpack"]


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


@dataclass(slots=True)
class GroupRecord:
    """Everything we keep about one group (keystore ``groups``)."""

    gid: bytes
    seed: bytes  # our per-group Ed25519 seed
    dh: bytes  # our per-group X25519 private key
    rid: bytes
    sid: bytes
    owner: bytes  # our group mailbox's owner seed
    name: str  # our display name in the group
    status: str  # "joining" | "active" | "left" | "removed"
    log: list[bytes] = field(default_factory=list)
    es: bytes | None = None  # the epoch secret we hold
    es_epoch: int = -1
    head: int = -1  # joining: the last log entry the welcome announced
    chain: list[Any] | None = None  # our SenderChain as [epoch, gen, index, ck]
    peers: dict[bytes, list[Any]] = field(default_factory=dict)  # gpk -> chain + skipped
    eids: list[bytes] = field(default_factory=list)
    msgs: list[list[Any]] = field(default_factory=list)  # [mid, gpk, text, ts]
    invited: dict[bytes, bytes] = field(default_factory=dict)  # contact id -> gid (pending)
    inviter: bytes = b""  # joining: the inviter's gpk
    via: bytes = b""  # joining: the contact id of the inviter
    #: Sender keys signed by a key the log does not name yet (its ``add`` is on its way).
    early: dict[bytes, list[Any]] = field(default_factory=dict)
    #: Sealed messages not yet accepted by the relay: ``[eid, ct, epoch]`` (and ``fc``, the
    #: franking commitment of a text, revision 16), in order.
    out: list[list[Any]] = field(default_factory=list)
    #: Our typing setting for this group (protocol.md §26.8): we send indicators and show
    #: the others' only while it is on.
    typing: bool = True
    #: Restored from a backup (protocol.md §24.3): the generation of the sender chain to
    #: start and distribute on the next connect (-1: nothing to resume).
    resume: int = -1
    #: Report evidence of received franked texts (§26.9): message id -> ReportEvidence
    #: bytes, for the messages ``msgs`` still holds.
    ev: dict[bytes, bytes] = field(default_factory=dict)
    #: Our receipts setting for this group (§26.8): delivery and read receipts are sent to
    #: authors, and theirs kept, only while it is on.
    receipts: bool = True
    #: Receipts for our own messages: message id -> {member gpk: 1 delivered | 2 read}.
    acks: dict[bytes, dict[bytes, int]] = field(default_factory=dict)
    #: Received messages we owe (or sent) a read receipt for (so each is read once).
    seen: list[bytes] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return _pack(
            {
                "gid": self.gid,
                "seed": self.seed,
                "dh": self.dh,
                "rid": self.rid,
                "sid": self.sid,
                "owner": self.owner,
                "name": self.name,
                "status": self.status,
                "log": self.log,
                "es": self.es,
                "ese": self.es_epoch,
                "head": self.head,
                "chain": self.chain,
                "peers": self.peers,
                "eids": self.eids,
                "msgs": self.msgs,
                "invited": self.invited,
                "inviter": self.inviter,
                "via": self.via,
                "early": self.early,
                "out": self.out,
                "typ": self.typing,
                "rsm": self.resume,
                "ev": self.ev,
                "rcp": self.receipts,
                "acks": self.acks,
                "seen": self.seen,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> GroupRecord:
        d = _unpack(data)
        return cls(
            gid=d["gid"],
            seed=d["seed"],
            dh=d["dh"],
            rid=d["rid"],
            sid=d["sid"],
            owner=d["owner"],
            name=d["name"],
            status=d["status"],
            log=list(d["log"]),
            es=d["es"],
            es_epoch=d["ese"],
            head=d["head"],
            chain=d["chain"],
            peers=dict(d["peers"]),
            eids=list(d["eids"]),
            msgs=list(d["msgs"]),
            invited=dict(d["invited"]),
            inviter=d["inviter"],
            via=d["via"],
            early=dict(d.get("early", {})),
            out=list(d.get("out", [])),
            typing=bool(d.get("typ", True)),
            resume=int(d.get("rsm", -1)),
            ev=dict(d.get("ev", {})),
            receipts=bool(d.get("rcp", True)),
            acks={k: dict(v) for k, v in d.get("acks", {}).items()},
            seen=list(d.get("seen", [])),
        )

    @property
    def keys(self) -> GroupKeys:
        return GroupKeys(sign_seed=self.seed, dh_private=self.dh)


@dataclass(slots=True)
class _Live:
    """A group record with its state rebuilt from the log (memory only)."""

    rec: GroupRecord
    state: GroupState

    @property
    def me(self) -> bytes:
        return self.rec.keys.gpk
