"""The archive's dependency rule (issue 12), read from the sources: ``archive`` imports only a small
shared core of ``appliance``, that core needs the standard library only (and zlib-ng), and nothing in ``appliance``
imports ``archive`` except the demo (which starts an archive server to show the whole loop)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from appliance.config import REPO_ROOT

# The shared core and why each module is in it (docs/ARCHIVE.md "Layout"):
CORE = {
    "appliance.hashing": "the one adler32/sha256 implementation and formatter (catalog, Digest headers, clients)",
    "appliance.fsutil": "atomic writes and directory fsyncs",
    "appliance.errors": "the error classes whose exit codes the CLIs share",
    "appliance.exitcodes": "the product's one exit-code table",
    "appliance.cliutil": "one error line + exit code per failure, no traceback, for both CLIs",
}
DEMO = {"appliance/demo.py", "appliance/demo_archive.py"}
THIRD_PARTY = {"zlib_ng": "hashing's adler32 (a pyproject dependency; the core needs nothing else)"}


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)  # `from appliance import x`
    return out


def _top(name: str) -> str:
    return name.split(".")[0]


def test_archive_imports_only_the_shared_core() -> None:
    bad = {}
    for p in sorted((REPO_ROOT / "archive").rglob("*.py")):
        used = {m for m in _imports(p) if _top(m) == "appliance"}
        # `from appliance.errors import X` also yields appliance.errors.X: judge by module
        outside = {m for m in used if m not in CORE and not any(m.startswith(c + ".") for c in CORE)}
        if outside:
            bad[str(p.relative_to(REPO_ROOT))] = sorted(outside)
    assert not bad, f"archive imports appliance modules outside the shared core: {bad}"


def test_the_shared_core_is_standard_library_only() -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"} | set(THIRD_PARTY)
    for mod in CORE:
        p = REPO_ROOT / (mod.replace(".", "/") + ".py")
        for m in _imports(p):
            top = _top(m)
            if top == "appliance":
                assert any(m == c or m.startswith(c + ".") for c in CORE), f"{p.name} imports {m}"
            else:
                assert top in stdlib, f"{p.name} imports {m}, outside the standard library and THIRD_PARTY"


def test_nothing_in_appliance_imports_archive_but_the_demo() -> None:
    users = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "appliance").rglob("*.py")
                   if any(_top(m) == "archive" for m in _imports(p)))
    assert set(users) <= DEMO, users
