"""The repository keeps the shape issue 10 gave it: the README's layout section names every
package of ``relay/`` and ``clientlib/``, and no source file there grows past the size at
which STYLE asks for a split."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: "Files over about 900 lines should be split": the check leaves a margin for the "about".
MAX_LINES = 1000


def _layout_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Repository layout")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _packages() -> list[str]:
    found = []
    for top in ("relay", "clientlib"):
        for init in sorted((ROOT / top).rglob("__init__.py")):
            found.append(init.parent.relative_to(ROOT).as_posix() + "/")
    return found


def test_readme_layout_names_every_package() -> None:
    section = _layout_section()
    packages = _packages()
    assert "relay/storage/sqlite/" in packages  # the walk found the nested packages
    missing = [p for p in packages if p not in section]
    assert not missing, f"README 'Repository layout' does not list {missing}"


def test_no_source_file_is_over_the_split_size() -> None:
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for top in ("relay", "clientlib")
        for path in (ROOT / top).rglob("*.py")
    }
    assert len(sizes) > 50
    too_big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_big, f"split these files (STYLE: about 900 lines at most): {too_big}"
