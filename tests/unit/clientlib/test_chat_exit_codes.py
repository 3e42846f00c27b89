"""One exit-status scheme for blindchat and ``blindrelay admin`` (README "Exit status"), and
blindchat's distinct answer when a relay's TLS certificate cannot be verified."""

from __future__ import annotations

import datetime
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clientlib.chat import cli
from relay import cli as relay_cli
from relay.admin import cli as admin_cli

PASS = "correct horse battery staple"


def test_blindchat_and_blindrelay_admin_share_one_scheme() -> None:
    assert (cli.EXIT_OK, admin_cli.EX_OK, relay_cli.EX_OK) == (0, 0, 0)
    assert cli.EXIT_FAILED == admin_cli.EX_FAILED == 1  # ran, failed or refused
    assert cli.EXIT_USAGE == admin_cli.EX_USAGE == relay_cli.EX_USAGE == 2
    assert cli.EXIT_UNAVAILABLE == admin_cli.EX_UNAVAILABLE == relay_cli.EX_UNAVAILABLE == 69
    assert cli.EXIT_KEYSTORE == 74  # EX_IOERR: local state unusable
    assert relay_cli.EX_CONFIG == 78
    codes = {cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_UNAVAILABLE, cli.EXIT_KEYSTORE}
    assert len(codes) == 5  # no code means two things


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    """An HTTPS server with a self-signed certificate (no client trusts it)."""
    cert, key = self_signed(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_tls_verification_failure_is_not_called_unreachable(
    tls_server: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BLINDCHAT_PASSPHRASE", PASS)
    monkeypatch.setenv("HOME", str(tmp_path / "nohome"))
    home = str(tmp_path / "alice")
    relay = f"https://127.0.0.1:{tls_server}"
    init = ["--home", home, "init", "--relay", relay, "--name", "alice", "--kdf", "minimum"]
    assert cli.main(init) == 0
    capsys.readouterr()
    code = cli.main(["--home", home, "invite"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_UNAVAILABLE
    assert err.startswith(f"blindchat: cannot verify the TLS certificate of {relay} ("), err
    assert "unreachable" not in err
