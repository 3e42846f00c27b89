"""Passphrase policy for new keystores and passphrase changes (protocol.md §23.4).

The keystore's only secret is the passphrase: whoever copies the file can guess offline, at
the cost of one Argon2id derivation per guess. The library therefore refuses a new
passphrase that is short or guessable:

* at least :data:`MIN_PASSPHRASE_LENGTH` (12) characters (Unicode code points), and
* a `zxcvbn <https://github.com/dwolffs/zxcvbn-python>`_ score of at least
  :data:`MIN_SCORE` (3 of 4: about 10^8 or more guesses expected, "safely unguessable"
  against an offline attack slowed down by Argon2id at the MODERATE or INTERACTIVE cost).

zxcvbn estimates guesses from dictionaries (common passwords, names, English words),
keyboard patterns, repeats, sequences and dates, plus ``user_inputs`` (say the display name).
Only the first :data:`_SCORED_PREFIX` (72) characters are scored (zxcvbn refuses longer
input, as its cost grows faster than linearly); a longer passphrase is at least as strong as
its prefix.
Opening an existing keystore never applies the policy, so an old keystore keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from zxcvbn import zxcvbn

from clientlib.keystore.errors import WeakPassphrase

__all__ = ["MIN_PASSPHRASE_LENGTH", "MIN_SCORE", "check_passphrase_strength"]

MIN_PASSPHRASE_LENGTH: Final = 12
MIN_SCORE: Final = 3
_SCORED_PREFIX: Final = 72


def check_passphrase_strength(passphrase: bytes, *, user_inputs: Sequence[str] = ()) -> None:
    """Refuse a passphrase too weak for a keystore.

    Args:
        passphrase: the candidate, UTF-8 (other bytes are scored as Latin-1 characters).
        user_inputs: words the user is likely to reuse (name, relay host), scored as a
            dictionary.

    Raises:
        WeakPassphrase: too short, or scored below :data:`MIN_SCORE`; the message says which
            and what is required, never the passphrase.
        TypeError: ``passphrase`` is not bytes.
    """
    if type(passphrase) is not bytes:
        raise TypeError("passphrase must be bytes (encode text as UTF-8)")
    try:
        text = passphrase.decode("utf-8")
    except UnicodeDecodeError:
        text = passphrase.decode("latin-1")
    if len(text) < MIN_PASSPHRASE_LENGTH:
        raise WeakPassphrase(f"it has fewer than {MIN_PASSPHRASE_LENGTH} characters")
    result = zxcvbn(text[:_SCORED_PREFIX], user_inputs=[str(u) for u in user_inputs if u])
    if result["score"] < MIN_SCORE:
        warning = str(result["feedback"].get("warning") or "").strip().rstrip(".")
        why = warning[:1].lower() + warning[1:] if warning else "it is easy to guess"
        raise WeakPassphrase(f"{why} (strength {result['score']} of 4, {MIN_SCORE} needed)")
