"""Import-direction rules (STYLE.md §2): the relay stays blind by construction."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


FORBIDDEN_FOR_RELAY = (
    "clientlib.crypto",
    "clientlib.session",
    "clientlib.keystore",
    "clientlib.transport",
    "clientlib.client",
)


def test_relay_never_imports_client_secrets_code() -> None:
    assert modules("relay")
    for path in modules("relay"):
        for name in imports_of(path):
            assert not name.startswith(FORBIDDEN_FOR_RELAY), f"{path.name} imports {name}"
            assert name != "cryptography" and not name.startswith("cryptography."), path.name


def test_clientlib_never_imports_relay() -> None:
    for path in modules("clientlib"):
        for name in imports_of(path):
            assert name != "relay" and not name.startswith("relay."), f"{path.name} imports {name}"


def test_wire_is_pure() -> None:
    allowed_prefixes = ("clientlib.wire", "clientlib.errors", "msgpack", "__future__")
    import sys

    stdlib = sys.stdlib_module_names
    for path in modules("clientlib/wire"):
        for name in imports_of(path):
            top = name.split(".")[0]
            assert top in stdlib or name.startswith(allowed_prefixes), f"{path.name} imports {name}"


def test_sans_io_cores_do_no_io() -> None:
    banned = ("asyncio", "aiohttp", "socket", "time", "secrets", "random", "os", "datetime")
    for package in ("clientlib/session", "clientlib/crypto", "clientlib/wire"):
        for path in modules(package):
            names = imports_of(path)
            for name in names:
                assert name.split(".")[0] not in banned, f"{path} imports {name}"
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr in ("urandom", "random", "time"):
                    assert not (
                        isinstance(node.value, ast.Name)
                        and node.value.id in ("os", "utils", "time")
                    ), path
                    assert not (
                        isinstance(node.value, ast.Attribute) and node.value.attr == "utils"
                    ), path


def test_only_the_app_factory_picks_a_backend() -> None:
    for path in modules("relay"):
        if path.name == "backend.py" or "storage" in path.parts:
            continue
        for name in imports_of(path):
            assert not name.startswith(("relay.storage.sqlite", "relay.storage.redis")), path.name


def test_relay_process_does_not_load_client_crypto() -> None:
    import subprocess
    import sys

    code = (
        "import sys, relay.app, relay.cli;"
        "bad=[m for m in sys.modules if m.startswith(('clientlib.crypto','clientlib.session'))];"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""


def test_transport_has_no_crypto_or_session() -> None:
    for path in modules("clientlib/transport"):
        for name in imports_of(path):
            assert not name.startswith(
                (
                    "clientlib.crypto",
                    "clientlib.session",
                    "clientlib.keystore",
                    "nacl",
                    "cryptography",
                )
            ), f"{path.name} imports {name}"


# --- inside the relay (issue 10): handlers -> service -> storage, never back ----------------


def relay_imports(path: Path, *, runtime_only: bool = False) -> set[str]:
    """The ``relay.*`` modules ``path`` imports (lazily too); with ``runtime_only``, leaving
    out imports under ``if TYPE_CHECKING:`` (types only, no import at run time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test) in (
                "TYPE_CHECKING",
                "typing.TYPE_CHECKING",
            ):
                skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("relay."))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and node.module.startswith("relay.")
        ):
            found.add(node.module)
    return found


#: What the I/O shells may import from the relay: the service (logic), the sans-IO connection,
#: the app keys and the errors; and ``relay.metrics``, a leaf that imports nothing of the relay
#: (``/metrics`` renders it). Nothing of storage, auth, franking or moderation.
SHELL_MAY_IMPORT = frozenset(
    {"relay.service", "relay.protocol", "relay.appkeys", "relay.errors", "relay.metrics"}
)


def test_metrics_is_a_leaf() -> None:
    assert relay_imports(ROOT / "relay" / "metrics.py") == set()


def test_ws_and_http_import_only_service_protocol_appkeys_errors() -> None:
    shells = modules("relay/ws") + modules("relay/http")
    assert len(shells) >= 2
    for path in shells:
        package = "relay." + path.parent.name + "."  # a shell's own modules (relay.ws.inline)
        extra = {m for m in relay_imports(path) - SHELL_MAY_IMPORT if not m.startswith(package)}
        assert not extra, f"{path.relative_to(ROOT)} imports {sorted(extra)}"


def test_protocol_core_imports_no_service_or_storage() -> None:
    for name in relay_imports(ROOT / "relay" / "protocol.py"):
        assert not name.startswith(("relay.service", "relay.storage")), name
        assert not name.startswith(("relay.ws", "relay.http", "relay.app")), name


def test_http_does_not_import_the_websocket_shell() -> None:
    for path in modules("relay/http"):
        assert not any(n.startswith("relay.ws") for n in relay_imports(path)), path.name


def test_appkeys_and_errors_sit_below_the_service() -> None:
    for name in ("appkeys.py", "errors.py", "auth.py", "config.py"):
        found = relay_imports(ROOT / "relay" / name, runtime_only=True)
        bad = {n for n in found if n.startswith(("relay.service", "relay.ws", "relay.http"))}
        assert not bad, f"{name} imports {sorted(bad)}"


def test_admin_never_imports_the_app_factory() -> None:
    """The admin CLI builds its store through relay.backend; relay.app imports relay.admin."""
    for path in modules("relay/admin"):
        found = relay_imports(path)
        assert "relay.app" not in found and "relay.cli" not in found, path.name
