"""Protocol-wide sizes and limits shared by the relay and clients (protocol.md §7).

Relay operators may lower the configurable limits; the values here are the v1 maxima that a
conforming client must be able to rely on.
"""

from __future__ import annotations

__all__ = [
    "ATTACHMENT_ID_SIZE",
    "BOUNDARY_SIZES",
    "CAPABILITY_CONTEXT",
    "CAPABILITY_HASH_SIZE",
    "CAPABILITY_SIZE",
    "CHALLENGE_SIZE",
    "DELEGATE_CONTEXT",
    "ED25519_PUBLIC_KEY_SIZE",
    "ED25519_SIGNATURE_SIZE",
    "ENVELOPE_BUCKETS",
    "ENVELOPE_ID_SIZE",
    "FANOUT_ENTRY_SIZE",
    "FLAG_ONLINE_ONLY",
    "FRANKING_COMMITMENT_SIZE",
    "FRANKING_KEY_SIZE",
    "FRANKING_TAG_SIZE",
    "HANDLE_SIZE",
    "KIND_ADDRESS",
    "KIND_OPEN",
    "KIND_PAIRWISE",
    "KNOWN_FLAGS",
    "MAILBOX_ID_SIZE",
    "MAILBOX_KINDS",
    "MAX_ACK_BATCH",
    "MAX_ATTACHMENT_REFS",
    "MAX_BANS_PER_COMMAND",
    "MAX_CAPS_PER_COMMAND",
    "MAX_ENVELOPE_SIZE",
    "MAX_FANOUT",
    "MAX_FANOUT_CT",
    "MAX_FETCH_BATCH",
    "MAX_FETCH_BYTES",
    "MAX_FRAME_SIZE",
    "MAX_FRANKING_CONTEXT_SIZE",
    "MAX_OWNER_COMMAND_SIZE",
    "MAX_POW_BITS",
    "MAX_PREKEY_ITEM_SIZE",
    "MAX_PREKEY_STATIC_SIZE",
    "MAX_PREKEY_UPLOAD",
    "MAX_PUSH_URL_BYTES",
    "MAX_RELAY_FRAME_SIZE",
    "MAX_REPORTED_MESSAGE_SIZE",
    "MAX_REPORT_ATTACHMENTS",
    "MAX_REPORT_NOTE_BYTES",
    "MAX_REQUESTS_PER_DAY",
    "MAX_REQUEST_ID",
    "MAX_SUBSCRIPTIONS",
    "OWNER_COMMAND_CONTEXT",
    "POW_CONTEXT",
    "POW_NONCE_SIZE",
    "PUSH_TOKEN_SIZE",
    "RECALL_CONTEXT",
    "RECALL_SECRET_SIZE",
    "REPORT_ACTIONS",
    "REPORT_ID_SIZE",
    "REPORT_REASONS",
    "REPORT_STATUSES",
    "bucket_for",
]

#: Mailbox receive ids and send ids: 128 random bits, unguessable and collision-free in practice.
MAILBOX_ID_SIZE = 16
#: Client-chosen envelope id used for idempotent deposit: 128 random bits.
ENVELOPE_ID_SIZE = 16
#: Relay-issued single-use challenge.
CHALLENGE_SIZE = 32
ED25519_PUBLIC_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
#: HMAC-SHA256 franking commitment (protocol.md part II).
FRANKING_COMMITMENT_SIZE = 32
#: The per-message franking key a report reveals (protocol.md §15).
FRANKING_KEY_SIZE = 32

#: The only lengths an envelope ciphertext may have. Powers of two from 256 B to 64 KiB: a
#: relay (and anyone watching it) learns one of 9 size classes, never a length. Small messages
#: (the common case: text, receipts, typing) all share the 256 B class. Larger media travel as
#: attachments, not envelopes. SimpleX uses a single 16 KiB block; we trade a little leakage
#: (log2 classes) for not sending 16 KiB per typing indicator.
ENVELOPE_BUCKETS: tuple[int, ...] = tuple(256 << i for i in range(9))
MAX_ENVELOPE_SIZE = ENVELOPE_BUCKETS[-1]

#: Prekey hosting (protocol.md §4.7): the static part of a mailbox's prekey material, one
#: one-time item, and the most one-time items one ``keys`` owner command may carry. The relay
#: never interprets these opaque blobs.
MAX_PREKEY_STATIC_SIZE = 4096
MAX_PREKEY_ITEM_SIZE = 2048
MAX_PREKEY_UPLOAD = 32

#: Mailbox kinds (protocol.md §4.8, revision 3). ``open``: anyone who knows the send id may
#: deposit (revision 1 behaviour); ``pair``: deposits need a send capability the owner
#: registered; ``addr``: a contact address, whose deposits are contact requests within the
#: owner's boundaries (§4.9).
KIND_OPEN = "open"
KIND_PAIRWISE = "pair"
KIND_ADDRESS = "addr"
MAILBOX_KINDS: tuple[str, ...] = (KIND_OPEN, KIND_PAIRWISE, KIND_ADDRESS)

#: A send capability (chosen by the mailbox owner per contact) and the hash the relay stores.
CAPABILITY_SIZE = 32
CAPABILITY_HASH_SIZE = 32
#: Most capability hashes one ``caps`` owner command may add, and remove.
MAX_CAPS_PER_COMMAND = 64
#: Domain separation of capability hashes: SHA-256(CAPABILITY_CONTEXT || sid || cap).
CAPABILITY_CONTEXT = b"blindrelay/v1/cap\x00"
#: A recall secret and its hash (protocol.md §5.10, revision 15): ``rc`` of ``dep`` is
#: SHA-256(RECALL_CONTEXT || rs); ``recall`` presents ``rs``.
RECALL_SECRET_SIZE = 32
RECALL_CONTEXT = b"blindrelay/v1/recall\x00"
#: Domain of a delegate's hash (protocol.md §26.2, revision 9): an owner registers
#: ``SHA-256(DELEGATE_CONTEXT || sid || key)`` among its capability hashes to let ``key``
#: sign ``dcaps`` (replace capability hashes) on its mailbox.
DELEGATE_CONTEXT = b"blindrelay/v1/dlg\x00"
#: One fan-out entry (protocol.md §26.1, revision 9): ``sid (16) || cap (32)``.
FANOUT_ENTRY_SIZE = 48
#: The most entries one ``fan`` frame may carry (a 1,001-member group sends to 1,000).
MAX_FANOUT = 1000
#: The largest ciphertext bucket a ``fan`` frame may carry (the entries share the frame).
MAX_FANOUT_CT = 32768

#: A requester's handle: a per-(requester, address) pseudonym carried by contact requests.
HANDLE_SIZE = 16
#: Most handles one ``ban`` owner command may ban, and unban.
MAX_BANS_PER_COMMAND = 64
#: Attachment ids a deposit may reference, and their size.
ATTACHMENT_ID_SIZE = 16
MAX_ATTACHMENT_REFS = 16
#: The envelope buckets a contact address may accept as its largest request (2 KiB..64 KiB).
BOUNDARY_SIZES: tuple[int, ...] = tuple(b for b in ENVELOPE_BUCKETS if b >= 2048)
#: Largest daily request allowance of a contact address.
MAX_REQUESTS_PER_DAY = 100_000

#: Proof of work (protocol.md §4.9): a relay-issued nonce, the largest difficulty in leading
#: zero bits, and the domain separation of the hash.
POW_NONCE_SIZE = 16
MAX_POW_BITS = 32
POW_CONTEXT = b"blindrelay/v1/pow\x00"

#: Relay franking tags and abuse reports (protocol.md §4.11, revision 4). The relay tags every
#: stored deposit that carries ``fc`` with ``ft`` (HMAC-SHA256, 32 bytes) over ``fc`` and a
#: context ``fx`` (at most 64 bytes: kid, day, send id, source kind and source).
FRANKING_TAG_SIZE = 32
MAX_FRANKING_CONTEXT_SIZE = 64
#: A report id: the first 16 bytes of SHA-256(ft).
REPORT_ID_SIZE = 16
#: Largest reported message (the exact content bytes under the commitment).
MAX_REPORTED_MESSAGE_SIZE = 65536
#: Most attachment plaintexts one report reveals (as many as a message may reference); the
#: whole report must still fit ``MAX_OWNER_COMMAND_SIZE``.
MAX_REPORT_ATTACHMENTS = 16
#: Largest free-text note a reporter adds, in bytes of UTF-8.
MAX_REPORT_NOTE_BYTES = 1000
#: Push wake-ups (protocol.md §28): the opaque token a wake-up POST carries as its whole body,
#: and the longest endpoint URL (UTF-8 bytes).
PUSH_TOKEN_SIZE = 32
MAX_PUSH_URL_BYTES = 512
#: Bytes of an AMF signature ``sigma`` in a report (protocol.md §15.5.6; revision 5).
AMF_SIGNATURE_SIZE = 448
#: Why a report is filed (``why``), the states of a report and what a moderator did.
REPORT_REASONS: tuple[str, ...] = (
    "harassment",
    "threats",
    "non_consensual_content",
    "minor_safety",
    "spam",
    "impersonation",
    "other",
)
REPORT_STATUSES: tuple[str, ...] = ("open", "resolved")
REPORT_ACTIONS: tuple[str, ...] = ("none", "revoke", "suspend")

#: Largest encoded owner command (the ``cmd`` of an ``own`` frame, version byte included). A
#: full ``keys`` upload (32 items of 2 KiB and a 4 KiB static part, about 68.2 KiB encoded)
#: fits with room to spare.
MAX_OWNER_COMMAND_SIZE = 80 * 1024

#: Largest frame in v1: the largest envelope or owner command plus room for the fields around
#: it (82,944 bytes, set by the owner command since the prekey revision of v1). A frame is
#: rejected on its length before any decoding work (h11 precedent: limit, then parse).
MAX_FRAME_SIZE = max(MAX_ENVELOPE_SIZE, MAX_OWNER_COMMAND_SIZE) + 1024

#: Largest frame the relay sends: a fetch reply carries at most this many ciphertext bytes
#: (the relay stops adding envelopes before crossing it) plus per-envelope headers.
MAX_FETCH_BYTES = 1 << 20
MAX_RELAY_FRAME_SIZE = MAX_FETCH_BYTES + MAX_FRAME_SIZE + 256 * 96

#: Request ids are unsigned 32-bit integers chosen by the client and echoed by the relay.
MAX_REQUEST_ID = 2**32 - 1
#: Most sequence numbers one ack frame may carry; bounds the work of one frame.
MAX_ACK_BATCH = 256
#: Most envelopes one pull (HTTP fetch) may return.
MAX_FETCH_BATCH = 256
#: Default cap of mailboxes one connection may subscribe to (relays may lower it).
MAX_SUBSCRIPTIONS = 1024

#: Bit 0 of ``flags``: deliver only to a connected owner, never store (typing indicators).
FLAG_ONLINE_ONLY = 0x01
#: Every defined flag bit; any other bit set is MALFORMED.
KNOWN_FLAGS = FLAG_ONLINE_ONLY

#: Domain-separation prefix of owner command signatures (protocol.md §4.2).
OWNER_COMMAND_CONTEXT = b"blindrelay/v1/owner-command\x00"


def bucket_for(length: int) -> int:
    """Return the smallest envelope bucket that holds ``length`` bytes.

    Raises:
        ValueError: if ``length`` exceeds the largest bucket.
    """
    for bucket in ENVELOPE_BUCKETS:
        if length <= bucket:
            return bucket
    raise ValueError("length exceeds the largest envelope bucket")
