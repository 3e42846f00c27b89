"""clientlib.keystore: file format, error mapping, atomic writes, and Protocol conformance."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import nacl.pwhash.argon2id as argon2id
import pytest

from clientlib.crypto.primitives import aead_encrypt
from clientlib.errors import KeystoreError, MessagingError
from clientlib.keystore import (
    CorruptKeystore,
    FileKeystore,
    InMemoryKeystore,
    Keystore,
    KeystoreClosed,
    KeystoreExists,
    KeystoreLocked,
    KeystoreNotFound,
    UnsupportedKeystoreVersion,
    WrongPassphrase,
)
from clientlib.keystore import file as ks_file

PASS = b"correct horse battery staple"
FAST = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}
SECRET = b"\x13\x37 identity-seed-bytes \xfe"


def make_rng(seed: bytes = b"test") -> Callable[[int], bytes]:
    """Deterministic rng (SHAKE-256 stream); distinct outputs on every call."""
    counter = iter(range(10**9))

    def rng(n: int) -> bytes:
        return hashlib.shake_256(seed + next(counter).to_bytes(8, "big")).digest(n)

    return rng


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "client.brks"


def create(path: Path, passphrase: bytes = PASS) -> FileKeystore:
    return FileKeystore.create(path, passphrase, rng=make_rng(), **FAST)


def open_(path: Path, passphrase: bytes = PASS) -> FileKeystore:
    return FileKeystore.open(path, passphrase, rng=make_rng(b"open"))


@pytest.fixture
def small_file(path: Path) -> bytes:
    ks = create(path)
    ks.put("identity", b"seed", SECRET)
    ks.save()
    ks.close()
    return path.read_bytes()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- round trip and format -------------------------------------------------------------------


def test_round_trip_across_reopen(path: Path) -> None:
    ks = create(path)
    ks.put("identity", b"seed", SECRET)
    ks.put("sessions", b"\x01" * 32, b"record-1")
    ks.put("sessions", b"\x00" * 32, b"record-0")
    ks.put("empty-later", b"k", b"v")
    ks.delete("empty-later", b"k")
    ks.save()
    ks.close()

    ks2 = open_(path)
    assert ks2.get("identity", b"seed") == SECRET
    assert ks2.items("sessions") == [(b"\x00" * 32, b"record-0"), (b"\x01" * 32, b"record-1")]
    assert ks2.items("empty-later") == []
    assert ks2.get("identity", b"missing") is None
    ks2.put("contacts", b"alice", b"")
    ks2.save()
    ks2.close()

    with open_(path) as ks3:
        assert ks3.get("contacts", b"alice") == b""
        assert ks3.get("identity", b"seed") == SECRET


def test_unsaved_changes_are_not_persisted(path: Path) -> None:
    ks = create(path)
    ks.put("identity", b"seed", SECRET)
    ks.close()
    with open_(path) as ks2:
        assert ks2.get("identity", b"seed") is None


def test_exact_header_layout_and_no_plaintext(path: Path, small_file: bytes) -> None:
    assert small_file[:4] == b"BRKS"
    assert small_file[4] == 1
    ops, mem_kib = struct.unpack(">II", small_file[5:13])
    assert (ops, mem_kib * 1024) == (FAST["opslimit"], FAST["memlimit"])
    assert ks_file.HEADER_SIZE == 53
    body = msgpack.packb({"identity": {b"seed": SECRET}}, use_bin_type=True)
    assert len(small_file) == 53 + len(body) + 16
    assert SECRET not in small_file and b"identity" not in small_file


def test_file_can_be_decrypted_from_the_documented_format(small_file: bytes) -> None:
    salt, nonce = small_file[13:29], small_file[29:53]
    key = argon2id.kdf(32, PASS, salt, opslimit=FAST["opslimit"], memlimit=FAST["memlimit"])
    import nacl.bindings

    body = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        small_file[53:], small_file[:53], nonce, key
    )
    assert msgpack.unpackb(body, raw=False, strict_map_key=False) == {"identity": {b"seed": SECRET}}


def test_salt_fixed_nonce_fresh_key_not_rederived(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ks = create(path)
    first = path.read_bytes()
    calls: list[int] = []
    real = ks_file._derive

    def counting(*args: object, **kwargs: object) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ks_file, "_derive", counting)
    ks.save()
    second = path.read_bytes()
    ks.save()
    third = path.read_bytes()
    assert calls == []
    assert first[13:29] == second[13:29] == third[13:29]
    assert len({first[29:53], second[29:53], third[29:53]}) == 3
    ks.close()


def test_file_mode_is_0600(path: Path, small_file: bytes) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    old_umask = os.umask(0)
    try:
        with open_(path) as ks:
            ks.save()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- errors ----------------------------------------------------------------------------------


def test_wrong_passphrase_changes_nothing(path: Path, small_file: bytes) -> None:
    before = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(WrongPassphrase, match="wrong passphrase or corrupted file") as info:
        open_(path, b"not the passphrase")
    assert PASS not in str(info.value).encode()
    assert path.read_bytes() == small_file
    assert sorted(p.name for p in path.parent.iterdir()) == before


def test_every_truncation_raises_a_keystore_error(path: Path, small_file: bytes) -> None:
    for n in range(len(small_file)):
        path.write_bytes(small_file[:n])
        with pytest.raises((CorruptKeystore, WrongPassphrase)):
            open_(path)
        assert path.read_bytes() == small_file[:n]


def test_short_files_are_corrupt_not_wrong_passphrase(path: Path, small_file: bytes) -> None:
    for n in (0, 3, 4, 5, 52, 68):
        path.write_bytes(small_file[:n])
        with pytest.raises(CorruptKeystore):
            open_(path)


def test_every_flipped_byte_raises_a_keystore_error(path: Path, small_file: bytes) -> None:
    for i in range(len(small_file)):
        for mask in (0x01, 0x80):
            damaged = bytearray(small_file)
            damaged[i] ^= mask
            path.write_bytes(bytes(damaged))
            with pytest.raises(KeystoreError):
                open_(path)


def test_appended_byte_raises_wrong_passphrase(path: Path, small_file: bytes) -> None:
    path.write_bytes(small_file + b"\x00")
    with pytest.raises(WrongPassphrase):
        open_(path)


def test_bad_magic(path: Path, small_file: bytes) -> None:
    path.write_bytes(b"XXXX" + small_file[4:])
    with pytest.raises(CorruptKeystore, match="bad magic"):
        open_(path)


@pytest.mark.parametrize("version", [2, 255])
def test_newer_version_is_unsupported(path: Path, small_file: bytes, version: int) -> None:
    path.write_bytes(small_file[:4] + bytes((version,)) + small_file[5:])
    with pytest.raises(UnsupportedKeystoreVersion, match="newer version of blindrelay") as info:
        open_(path)
    assert info.value.version == version


def test_version_zero_is_corrupt(path: Path, small_file: bytes) -> None:
    path.write_bytes(small_file[:4] + b"\x00" + small_file[5:])
    with pytest.raises(CorruptKeystore):
        open_(path)


@pytest.mark.parametrize(
    ("ops", "mem_kib"),
    [(0, 8), (1, 7), (ks_file.MAX_OPSLIMIT + 1, 8), (1, ks_file.MAX_MEMLIMIT // 1024 + 1)],
)
def test_out_of_range_kdf_params_rejected_before_derivation(
    path: Path, small_file: bytes, ops: int, mem_kib: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_derive(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("derived a key from unchecked parameters")

    monkeypatch.setattr(ks_file, "_derive", no_derive)
    path.write_bytes(small_file[:5] + struct.pack(">II", ops, mem_kib) + small_file[13:])
    with pytest.raises(CorruptKeystore, match="out of range"):
        open_(path)


def forge(path: Path, body: bytes) -> None:
    """Write a correctly encrypted file around an arbitrary body (same-passphrase forgery)."""
    salt, nonce = b"s" * 16, b"n" * 24
    header = b"BRKS\x01" + struct.pack(">II", 1, 8) + salt + nonce
    key = argon2id.kdf(32, PASS, salt, opslimit=1, memlimit=8192)
    path.write_bytes(header + aead_encrypt(key, nonce, body, header))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xc1",
        msgpack.packb([], use_bin_type=True),
        msgpack.packb({"ns": {b"k": b"v"}}, use_bin_type=True) + b"\x00",
        msgpack.packb({b"ns": {b"k": b"v"}}, use_bin_type=True),
        msgpack.packb({"ns": {"k": b"v"}}, use_bin_type=True),
        msgpack.packb({"ns": {b"k": "v"}}, use_bin_type=True),
        msgpack.packb({"ns": {b"k": 1}}, use_bin_type=True),
        msgpack.packb({"ns": [b"k", b"v"]}, use_bin_type=True),
        msgpack.packb({"": {b"k": b"v"}}, use_bin_type=True),
        msgpack.packb({"ns": {b"k": msgpack.ExtType(1, b"x")}}, use_bin_type=True),
        b"\x81\xa2ns\x82\xc4\x01k\xc4\x01v\xc4\x01k\xc4\x01w",  # duplicate inner key
        b"\x82\xa2ns\x80\xa2ns\x80",  # duplicate namespace
        b"\x81\xa2ns\x81\xc4\x01k\xc4\x05v",  # truncated bin
        b"\x81\xa2\xff\xfe\x80",  # invalid UTF-8 namespace
        b"\x91" * 5000,  # deep nesting
    ],
)
def test_malformed_authentic_body_is_corrupt(path: Path, body: bytes) -> None:
    forge(path, body)
    with pytest.raises(CorruptKeystore, match="malformed"):
        open_(path)


def test_forged_valid_body_opens(path: Path) -> None:
    forge(path, msgpack.packb({"ns": {b"k": b"v"}}, use_bin_type=True))
    with open_(path) as ks:
        assert ks.items("ns") == [(b"k", b"v")]


def test_create_refuses_existing_file(path: Path, small_file: bytes) -> None:
    with pytest.raises(KeystoreExists):
        create(path)
    assert path.read_bytes() == small_file


def test_open_missing_file(path: Path) -> None:
    with pytest.raises(KeystoreNotFound):
        open_(path)
    assert list(path.parent.iterdir()) == []


def test_errors_are_messaging_errors() -> None:
    for cls in (CorruptKeystore, KeystoreExists, WrongPassphrase, UnsupportedKeystoreVersion):
        assert issubclass(cls, KeystoreError) and issubclass(cls, MessagingError)


def test_argument_validation(path: Path) -> None:
    with pytest.raises(TypeError):
        FileKeystore.create(path, "text", rng=make_rng(), **FAST)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        FileKeystore.create(path, PASS, rng=make_rng(), opslimit=1, memlimit=8193)
    with pytest.raises(ValueError, match="rng"):
        FileKeystore.create(path, PASS, rng=lambda n: b"\x00", **FAST)
    assert not path.exists()
    with pytest.raises(TypeError):
        FileKeystore(path, b"", None, None, None, None)  # type: ignore[arg-type]


# -- atomicity, locking, wipe ----------------------------------------------------------------


def test_crash_during_replace_keeps_old_file(
    path: Path, small_file: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    ks = open_(path)
    ks.put("identity", b"seed", b"new value")

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr("clientlib.keystore.file.os.replace", crash)
    with pytest.raises(KeystoreError, match="cannot write"):
        ks.save()
    monkeypatch.undo()
    assert path.read_bytes() == small_file
    assert leftovers(path.parent) == []
    # The in-memory change survives the failed save and a retry succeeds.
    assert ks.get("identity", b"seed") == b"new value"
    ks.save()
    ks.close()
    with open_(path) as again:
        assert again.get("identity", b"seed") == b"new value"


def test_crash_during_fsync_keeps_old_file(
    path: Path, small_file: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    ks = open_(path)

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("clientlib.keystore.file.os.fsync", crash)
    with pytest.raises(KeystoreError):
        ks.save()
    monkeypatch.undo()
    assert path.read_bytes() == small_file
    assert leftovers(path.parent) == []
    ks.close()


def test_second_handle_is_locked_out(path: Path, small_file: bytes) -> None:
    ks = open_(path)
    with pytest.raises(KeystoreLocked):
        open_(path)
    ks.close()
    open_(path).close()


def test_open_rereads_after_locking(
    path: Path, small_file: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save that lands between the first read and the lock is not lost."""
    writer = open_(path)
    writer.put("identity", b"seed", b"saved under lock")
    real_lock = ks_file._Lock

    def lock_after_writer_saves(p: Path) -> object:
        writer.save()
        writer.close()
        return real_lock(p)

    monkeypatch.setattr(ks_file, "_Lock", lock_after_writer_saves)
    with FileKeystore.open(path, PASS, rng=make_rng()) as ks:
        assert ks.get("identity", b"seed") == b"saved under lock"


def test_wipe_removes_file_and_closes(path: Path, small_file: bytes) -> None:
    ks = open_(path)
    ks.wipe()
    assert not path.exists()
    assert list(path.parent.iterdir()) == []
    with pytest.raises(KeystoreClosed):
        ks.get("identity", b"seed")
    with pytest.raises(KeystoreClosed):
        ks.save()


def test_wipe_overwrites_before_unlinking(
    path: Path, small_file: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    ks = open_(path)
    seen: list[bytes] = []
    real_unlink = Path.unlink

    def spy(self: Path, missing_ok: bool = False) -> None:
        if self == path:
            seen.append(self.read_bytes())
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", spy)
    ks.wipe()
    assert seen == [bytes(len(small_file))]


def test_repr_has_no_secrets(path: Path) -> None:
    ks = create(path, PASS)
    ks.put("identity", b"seed", SECRET)
    key = ks._key
    assert key is not None
    for text in (repr(ks), str(ks), repr(InMemoryKeystore())):
        assert SECRET.hex() not in text and "identity" not in text
        assert key.hex() not in text and repr(key) not in text and "horse" not in text
        assert repr(SECRET) not in text
    assert "closed" not in repr(ks)
    ks.close()
    assert "closed" in repr(ks)


# -- Protocol conformance --------------------------------------------------------------------


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Keystore]:
    ks: Keystore
    if request.param == "memory":
        ks = InMemoryKeystore()
    else:
        ks = FileKeystore.create(tmp_path / "ks", PASS, rng=make_rng(), **FAST)
    yield ks
    ks.close()


def test_is_a_keystore(store: Keystore) -> None:
    assert isinstance(store, Keystore)


def test_put_get_delete_items(store: Keystore) -> None:
    assert store.get("ns", b"k") is None
    assert store.items("ns") == []
    store.put("ns", b"k2", b"v2")
    store.put("ns", b"k1", b"v1")
    store.put("other", b"k1", b"x")
    assert store.get("ns", b"k1") == b"v1"
    assert store.items("ns") == [(b"k1", b"v1"), (b"k2", b"v2")]
    store.put("ns", b"k1", b"v1b")
    assert store.get("ns", b"k1") == b"v1b"
    store.delete("ns", b"k1")
    store.delete("ns", b"k1")  # idempotent
    store.delete("nowhere", b"k1")
    assert store.get("ns", b"k1") is None
    assert store.items("ns") == [(b"k2", b"v2")]
    assert store.items("other") == [(b"k1", b"x")]
    store.save()
    assert store.items("ns") == [(b"k2", b"v2")]


def test_type_checks(store: Keystore) -> None:
    with pytest.raises(TypeError):
        store.put("ns", "k", b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.put("ns", b"k", "v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.get(b"ns", b"k")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.put("ns", bytearray(b"k"), b"v")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="namespace"):
        store.put("", b"k", b"v")
    with pytest.raises(ValueError, match="namespace"):
        store.items("n" * 256)


def test_closed_store_refuses_everything(store: Keystore) -> None:
    store.put("ns", b"k", b"v")
    store.close()
    store.close()  # idempotent
    for call in (
        lambda: store.get("ns", b"k"),
        lambda: store.put("ns", b"k", b"v"),
        lambda: store.delete("ns", b"k"),
        lambda: store.items("ns"),
        store.save,
        store.wipe,
    ):
        with pytest.raises(KeystoreClosed):
            call()


def test_wipe_forgets_contents(store: Keystore) -> None:
    store.put("ns", b"k", b"v")
    store.wipe()
    with pytest.raises(KeystoreClosed):
        store.items("ns")


# --- passphrase policy and KDF floor (issue 20, finding 5) -----------------------------------


@pytest.mark.parametrize(
    "weak",
    [b"", b"pw-alice", b"password1234", b"aaaaaaaaaaaaaaaa", b"qwertyuiopasdf", b"x" * 300],
)
def test_create_refuses_weak_passphrases(tmp_path: Path, weak: bytes) -> None:
    from clientlib.keystore import WeakPassphrase

    path = tmp_path / "ks"
    with pytest.raises(WeakPassphrase, match="passphrase too weak") as info:
        FileKeystore.create(path, weak, rng=make_rng(), **FAST)
    msg = str(info.value)
    assert "at least 12 characters" in msg and "3 of 4" in msg
    if weak:
        assert weak.decode() not in msg  # never echoed
    assert isinstance(info.value, KeystoreError)
    assert not path.exists()


def test_change_passphrase(tmp_path: Path) -> None:
    from clientlib.keystore import WeakPassphrase

    path = tmp_path / "ks"
    ks = create(path)
    ks.put("ns", b"k", b"v")
    ks.save()
    before = path.read_bytes()
    with pytest.raises(WeakPassphrase):
        ks.change_passphrase(b"short")
    assert path.read_bytes() == before
    new = b"a different long passphrase"
    ks.change_passphrase(new)
    ks.close()
    with pytest.raises(WrongPassphrase):
        open_(path, PASS)
    with open_(path, new) as again:
        assert again.get("ns", b"k") == b"v"
        assert path.read_bytes()[13:29] != before[13:29]  # a new salt


def test_minimum_kdf_is_not_public(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the test suite's private switch, costs below INTERACTIVE are refused, as is
    the client's "minimum" strength and blindchat's ``--kdf minimum``."""
    from clientlib.chat import cli
    from clientlib.client import Client, ClientConfig

    monkeypatch.delenv("CLIENTLIB_INSECURE_TEST_KDF")
    with pytest.raises(ValueError, match="below the INTERACTIVE cost"):
        FileKeystore.create(tmp_path / "ks", PASS, rng=make_rng(), **FAST)
    assert not (tmp_path / "ks").exists()
    with pytest.raises(ValueError, match="moderate or interactive"):
        Client.create(
            tmp_path / "c",
            PASS,
            relay_url="http://127.0.0.1:9",
            config=ClientConfig(kdf_strength="minimum"),
        )
    with pytest.raises(Exception, match="invalid choice: 'minimum'"):
        cli.build_parser().parse_args(["init", "--kdf", "minimum"])
    assert ks_file.MIN_OPSLIMIT == argon2id.OPSLIMIT_INTERACTIVE
    assert ks_file.MIN_MEMLIMIT == argon2id.MEMLIMIT_INTERACTIVE
