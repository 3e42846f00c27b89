"""The duress slot and passphrase changes of FileKeystore (protocol.md §23.4, §23.6).

Real files, real Argon2id (at its minimum cost) and real AEAD: a keystore with a duress
passphrase must look, from its files and from the work an open does, like one without.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path

import nacl.pwhash.argon2id as argon2id
import pytest

from clientlib.errors import KeystoreError
from clientlib.keystore import FileKeystore, WeakPassphrase, WrongPassphrase
from clientlib.keystore import file as ks_file

PASS = b"correct horse battery staple"
DURESS = b"purple elephant under the stairs"
FAST = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}
DECOY = {"meta": {b"identity": b"decoy-seed", b"name": b"nobody"}}


def make_rng(seed: bytes = b"t") -> Callable[[int], bytes]:
    counter = iter(range(10**9))
    return lambda n: hashlib.shake_256(seed + next(counter).to_bytes(8, "big")).digest(n)


def real(path: Path) -> FileKeystore:
    ks = FileKeystore.create(path, PASS, rng=make_rng(), **FAST)
    ks.put("meta", b"identity", b"real-seed")
    ks.put("contacts", b"bob", b"x" * 3000)
    ks.save()
    return ks


def slot(path: Path) -> Path:
    return path.with_name(path.name + ".slot")


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir()) if p.is_file()}


def test_every_keystore_has_a_slot_of_fixed_size_with_its_costs(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    real(path).close()
    raw = slot(path).read_bytes()
    assert len(raw) == ks_file.SLOT_SIZE
    assert raw[:13] == path.read_bytes()[:13]  # magic, version, the same costs
    assert raw[13:29] != path.read_bytes()[13:29]  # its own salt


def test_decoy_opens_and_the_real_keystore_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    ks = real(path)
    sizes_before = {k: len(v) for k, v in snapshot(path).items()}
    ks.set_duress(DURESS, DECOY)
    ks.close()
    # No size tell: the same files, each of the same size as without a duress passphrase.
    assert {k: len(v) for k, v in snapshot(path).items()} == sizes_before
    before = path.read_bytes()
    with FileKeystore.open(path, DURESS, rng=make_rng(b"o")) as decoy:
        assert decoy.is_decoy and decoy.history_path is None
        assert decoy.path == path
        assert decoy.get("meta", b"identity") == b"decoy-seed"
        assert decoy.items("contacts") == []
        decoy.put("contacts", b"carol", b"y" * 5000)
        decoy.save()  # the decoy is used, and still the slot keeps its size
    assert len(slot(path).read_bytes()) == ks_file.SLOT_SIZE
    assert path.read_bytes() == before
    with FileKeystore.open(path, PASS, rng=make_rng(b"p")) as again:
        assert not again.is_decoy
        assert again.get("meta", b"identity") == b"real-seed"
    with FileKeystore.open(path, DURESS, rng=make_rng(b"q")) as decoy:
        assert decoy.get("contacts", b"carol") == b"y" * 5000
    with pytest.raises(WrongPassphrase):
        FileKeystore.open(path, b"neither of the two passphrases", rng=make_rng())


def test_an_open_does_the_same_work_whichever_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Argon2id derivations at the file's costs and two AEAD checks, every time: the
    duress open, the normal open, a wrong passphrase and a keystore without duress."""
    calls: list[tuple[int, int]] = []
    aeads: list[int] = []
    derive, decrypt = ks_file._derive, ks_file.aead_decrypt

    def counted_derive(p: bytes, salt: bytes, ops: int, mem: int) -> bytes:
        calls.append((ops, mem))
        return derive(p, salt, ops, mem)

    def counted_decrypt(*args: bytes) -> bytes:
        aeads.append(len(args[2]))
        return decrypt(*args)

    monkeypatch.setattr(ks_file, "_derive", counted_derive)
    monkeypatch.setattr(ks_file, "aead_decrypt", counted_decrypt)
    with_duress, without = tmp_path / "a", tmp_path / "b"
    ks = real(with_duress)
    ks.set_duress(DURESS, DECOY)
    ks.close()
    real(without).close()
    work = []
    for path, pw in [
        (with_duress, PASS),
        (with_duress, DURESS),
        (with_duress, b"wrong" * 4),
        (without, PASS),
        (without, DURESS),
    ]:
        calls.clear()
        aeads.clear()
        with contextlib.suppress(WrongPassphrase):
            FileKeystore.open(path, pw, rng=make_rng()).close()
        work.append((tuple(calls), len(aeads)))
    assert len(set(work)) == 1, work
    assert work[0] == (((FAST["opslimit"], FAST["memlimit"]),) * 2, 2)


def test_wipe_mode_destroys_the_real_keystore_and_leaves_a_plain_one(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    history = path.with_name("ks.history")
    history.write_bytes(b"BRHIST history records" * 100)
    ks = real(path)
    ks.set_duress(DURESS, DECOY, wipe=True)
    ks.close()
    sizes = {k: len(v) for k, v in snapshot(path).items()}
    with FileKeystore.open(path, DURESS, rng=make_rng(b"o")) as opened:
        assert not opened.is_decoy and opened.history_path == history  # a plain keystore now
        assert opened.get("meta", b"identity") == b"decoy-seed"
    assert not history.exists()
    assert len(slot(path).read_bytes()) == sizes["ks.slot"]
    assert b"real-seed" not in path.read_bytes()
    with pytest.raises(WrongPassphrase):
        FileKeystore.open(path, PASS, rng=make_rng())
    with FileKeystore.open(path, DURESS, rng=make_rng()) as again:  # opens as the keystore
        assert again.get("meta", b"name") == b"nobody"


def test_refusals_change_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    ks = real(path)
    before = snapshot(path)
    with pytest.raises(ValueError, match="must differ"):
        ks.set_duress(PASS, DECOY)
    with pytest.raises(WeakPassphrase):
        ks.set_duress(b"password", DECOY)
    with pytest.raises(KeystoreError, match="full"):
        ks.set_duress(DURESS, {"big": {b"k": b"z" * ks_file.SLOT_SIZE}})
    with pytest.raises(ValueError, match="reserved"):
        ks.put("~keystore", b"slot-key", b"x")
    assert snapshot(path) == before
    ks.set_duress(DURESS, DECOY)
    with pytest.raises(ValueError, match="duress passphrase"):
        ks.change_passphrase(DURESS)
    ks.change_passphrase(b"another long passphrase here")  # same costs: duress kept
    ks.close()
    with FileKeystore.open(path, DURESS, rng=make_rng()) as decoy:
        assert decoy.is_decoy
    with FileKeystore.open(path, b"another long passphrase here", rng=make_rng()) as ks:
        ks.change_passphrase(PASS, opslimit=argon2id.OPSLIMIT_MIN + 1)  # new costs: reset
    with pytest.raises(WrongPassphrase):
        FileKeystore.open(path, DURESS, rng=make_rng())
    with FileKeystore.open(path, PASS, rng=make_rng()) as ks:
        ks.set_duress(DURESS, DECOY)
        ks.clear_duress()
    with pytest.raises(WrongPassphrase):
        FileKeystore.open(path, DURESS, rng=make_rng())


def test_passphrase_change_with_new_costs_and_forced_weak(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    ks = real(path)
    with pytest.raises(WeakPassphrase):
        ks.change_passphrase(b"password1234")
    with pytest.raises(WeakPassphrase, match="fewer than 8"):
        ks.change_passphrase(b"pass", allow_weak=True)
    ks.change_passphrase(b"password1234", allow_weak=True, opslimit=argon2id.OPSLIMIT_MIN + 1)
    ks.close()
    raw, slot_raw = path.read_bytes(), slot(path).read_bytes()
    assert raw[5:9] == slot_raw[5:9] == (argon2id.OPSLIMIT_MIN + 1).to_bytes(4, "big")
    with FileKeystore.open(path, b"password1234", rng=make_rng()) as again:
        assert again.get("meta", b"identity") == b"real-seed"


def test_a_keystore_from_before_slots_gets_one(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    real(path).close()
    slot(path).unlink()
    with FileKeystore.open(path, PASS, rng=make_rng()) as ks:
        assert ks.get("meta", b"identity") == b"real-seed"
    assert len(slot(path).read_bytes()) == ks_file.SLOT_SIZE
