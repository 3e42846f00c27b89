"""Every generator in ``tests/vectors`` still writes its committed file byte for byte.

The other conformance modules check the committed vectors against the specification and the
reference code; this one catches a generator that drifted from them (code it calls changed
underneath, as the keystore's duress slot once changed the draws of ``client-v1.json``), so
that regenerating never rewrites a vector silently. Each generator runs as its own process
from a copy of the directory without its output file, so a generator that writes nothing
fails too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
ROOT = VECTORS.parents[1]

#: generator -> the file it writes
GENERATORS = {
    "generate_vectors.py": "crypto-v1.json",
    "generate_amf_vectors.py": "amf-v1.json",
    "generate_attachment_vectors.py": "attachment-v1.json",
    "generate_client_vectors.py": "client-v1.json",
    "generate_devices_vectors.py": "devices-v1.json",
    "generate_franking_relay_vectors.py": "franking-relay-v1.json",
    "generate_group_vectors.py": "group-v1.json",
    "generate_route_vectors.py": "route-v1.json",
    "generate_session_v2_vectors.py": "session-v2.json",
}


def test_every_generator_is_listed() -> None:
    assert sorted(p.name for p in VECTORS.glob("generate_*.py")) == sorted(GENERATORS)


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_generator_reproduces_the_committed_file(generator: str, tmp_path: Path) -> None:
    out = GENERATORS[generator]
    copy = tmp_path / "vectors"
    shutil.copytree(VECTORS, copy, ignore=shutil.ignore_patterns("__pycache__", out))
    assert not (copy / out).exists()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    subprocess.run(
        [sys.executable, str(copy / generator)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (copy / out).read_bytes() == (VECTORS / out).read_bytes()
