"""A small, slow, independent ML-KEM-768 (FIPS 203) in pure Python, for tests only.

It gives the vector generator a *derandomized* ``Encaps_internal(ek, m)`` (``cryptography``
exposes none) and gives the conformance tests a second implementation to check
``cryptography``'s ML-KEM against: same public key from the same seed, and ``Decaps`` of our
ciphertext yields our shared secret. Written from FIPS 203 (August 2024) §4-§7 only.
"""

from __future__ import annotations

import hashlib

Q = 3329
N = 256
K = 3
ETA1 = 2
ETA2 = 2
DU = 10
DV = 4


def _bitrev7(i: int) -> int:
    return int(f"{i:07b}"[::-1], 2)


ZETAS = [pow(17, _bitrev7(i), Q) for i in range(128)]
GAMMAS = [pow(17, 2 * _bitrev7(i) + 1, Q) for i in range(128)]


def G(data: bytes) -> tuple[bytes, bytes]:
    h = hashlib.sha3_512(data).digest()
    return h[:32], h[32:]


def H(data: bytes) -> bytes:
    return hashlib.sha3_256(data).digest()


def J(data: bytes) -> bytes:
    return hashlib.shake_256(data).digest(32)


def prf(eta: int, s: bytes, b: int) -> bytes:
    return hashlib.shake_256(s + bytes([b])).digest(64 * eta)


def byte_encode(f: list[int], d: int) -> bytes:
    val = 0
    for i, c in enumerate(f):
        val |= c << (d * i)
    return val.to_bytes(32 * d, "little")


def byte_decode(data: bytes, d: int) -> list[int]:
    val = int.from_bytes(data, "little")
    mask = (1 << d) - 1
    return [(val >> (d * i)) & mask for i in range(N)]


def compress(x: int, d: int) -> int:
    return ((x << d) + Q // 2) // Q % (1 << d)


def decompress(y: int, d: int) -> int:
    return (y * Q + (1 << (d - 1))) >> d


def sample_ntt(seed: bytes) -> list[int]:
    length = 840
    while True:
        stream = hashlib.shake_128(seed).digest(length)
        out: list[int] = []
        pos = 0
        while len(out) < N and pos + 3 <= len(stream):
            c0, c1, c2 = stream[pos], stream[pos + 1], stream[pos + 2]
            d1 = c0 + 256 * (c1 % 16)
            d2 = c1 // 16 + 16 * c2
            if d1 < Q:
                out.append(d1)
            if d2 < Q and len(out) < N:
                out.append(d2)
            pos += 3
        if len(out) == N:
            return out
        length *= 2


def cbd(data: bytes, eta: int) -> list[int]:
    bits = int.from_bytes(data, "little")
    f = []
    for i in range(N):
        x = sum((bits >> (2 * i * eta + j)) & 1 for j in range(eta))
        y = sum((bits >> (2 * i * eta + eta + j)) & 1 for j in range(eta))
        f.append((x - y) % Q)
    return f


def ntt(f: list[int]) -> list[int]:
    f = list(f)
    i = 1
    length = 128
    while length >= 2:
        for start in range(0, N, 2 * length):
            zeta = ZETAS[i]
            i += 1
            for j in range(start, start + length):
                t = zeta * f[j + length] % Q
                f[j + length] = (f[j] - t) % Q
                f[j] = (f[j] + t) % Q
        length //= 2
    return f


def ntt_inv(f: list[int]) -> list[int]:
    f = list(f)
    i = 127
    length = 2
    while length <= 128:
        for start in range(0, N, 2 * length):
            zeta = ZETAS[i]
            i -= 1
            for j in range(start, start + length):
                t = f[j]
                f[j] = (t + f[j + length]) % Q
                f[j + length] = zeta * (f[j + length] - t) % Q
        length *= 2
    return [x * 3303 % Q for x in f]


def mul_ntt(f: list[int], g: list[int]) -> list[int]:
    h = [0] * N
    for i in range(128):
        a0, a1, b0, b1 = f[2 * i], f[2 * i + 1], g[2 * i], g[2 * i + 1]
        h[2 * i] = (a0 * b0 + a1 * b1 * GAMMAS[i]) % Q
        h[2 * i + 1] = (a0 * b1 + a1 * b0) % Q
    return h


def add(f: list[int], g: list[int]) -> list[int]:
    return [(a + b) % Q for a, b in zip(f, g, strict=True)]


def _matrix(rho: bytes) -> list[list[list[int]]]:
    return [[sample_ntt(rho + bytes([j, i])) for j in range(K)] for i in range(K)]


def keygen(d: bytes, z: bytes) -> tuple[bytes, bytes]:
    """``ML-KEM.KeyGen_internal(d, z)`` -> ``(ek, dk)``."""
    rho, sigma = G(d + bytes([K]))
    a = _matrix(rho)
    n = 0
    s = []
    for _ in range(K):
        s.append(ntt(cbd(prf(ETA1, sigma, n), ETA1)))
        n += 1
    e = []
    for _ in range(K):
        e.append(ntt(cbd(prf(ETA1, sigma, n), ETA1)))
        n += 1
    t = []
    for i in range(K):
        acc = e[i]
        for j in range(K):
            acc = add(acc, mul_ntt(a[i][j], s[j]))
        t.append(acc)
    ek = b"".join(byte_encode(x, 12) for x in t) + rho
    dk_pke = b"".join(byte_encode(x, 12) for x in s)
    return ek, dk_pke + ek + H(ek) + z


def encaps(ek: bytes, m: bytes) -> tuple[bytes, bytes]:
    """``ML-KEM.Encaps_internal(ek, m)`` -> ``(K, c)``."""
    key, r = G(m + H(ek))
    t = [byte_decode(ek[384 * i : 384 * (i + 1)], 12) for i in range(K)]
    rho = ek[384 * K :]
    a = _matrix(rho)
    n = 0
    y = []
    for _ in range(K):
        y.append(ntt(cbd(prf(ETA1, r, n), ETA1)))
        n += 1
    e1 = []
    for _ in range(K):
        e1.append(cbd(prf(ETA2, r, n), ETA2))
        n += 1
    e2 = cbd(prf(ETA2, r, n), ETA2)
    u = []
    for i in range(K):
        acc = [0] * N
        for j in range(K):
            acc = add(acc, mul_ntt(a[j][i], y[j]))
        u.append(add(ntt_inv(acc), e1[i]))
    mu = [decompress(b, 1) for b in byte_decode(m, 1)]
    acc = [0] * N
    for i in range(K):
        acc = add(acc, mul_ntt(t[i], y[i]))
    v = add(add(ntt_inv(acc), e2), mu)
    c1 = b"".join(byte_encode([compress(x, DU) for x in ui], DU) for ui in u)
    c2 = byte_encode([compress(x, DV) for x in v], DV)
    return key, c1 + c2
