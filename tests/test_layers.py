"""The import rules of docs/ARCHITECTURE.md ("Layers"), enforced on the source tree.

Every import statement in src/kernelyard counts, also ones inside functions or
``if TYPE_CHECKING:`` blocks: a lazy import that breaks the layering still
breaks it.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "kernelyard"

#: Higher layers may import lower ones, never the reverse.
LAYERS: dict[str, int] = {
    "errors": 0,
    "wire": 1,
    "lifecycle": 2,
    "discovery": 3,
    "provisioning": 3,
    "transport": 3,
    "backend": 4,
    "store": 4,
    "manager": 5,
    "client": 5,
    "kernel": 5,
    "testing": 5,
    "blocking": 6,
    "gateway": 5,
    "server": 7,
    "cli": 8,
}
#: Same-layer imports that are part of the design.
SIDEWAYS: set[tuple[str, str]] = {
    ("discovery", "provisioning"),
    ("manager", "client"),
    ("manager", "gateway"),  # run_kernel(gateway=...): the same helper for remote kernels
    ("gateway", "client"),  # a KernelClient over a remote kernel's WebSocket
    ("provisioning", "transport"),  # the JEP 66 registration socket; Curve key pairs
}
#: Packages nobody imports (the root package re-exports, __main__ runs the cli).
UNIMPORTABLE = {"blocking": {"__init__"}, "cli": {"__main__"}}
#: Third-party packages only one part of kernelyard may import.
OWNED = {
    "zmq": "transport",
    "starlette": "server",
    "uvicorn": "server",
    "httpx": "gateway",
    "websockets": "gateway",
    "traitlets": "cli",
}
#: wire/ is sans-I/O: of the standard library it may not use these.
WIRE_FORBIDDEN_STDLIB = {
    "asyncio",
    "concurrent",
    "io",
    "multiprocessing",
    "os",
    "pathlib",
    "select",
    "selectors",
    "shutil",
    "signal",
    "socket",
    "subprocess",
    "tempfile",
    "threading",
    "time",
}
WIRE_ALLOWED_THIRD_PARTY = {"orjson"}
#: Only these may start an event loop (the kernel runs one per shell thread).
LOOP_STARTERS = {"cli", "blocking", "kernel"}


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    line: int


def _part(path: Path, root: Path) -> str:
    """The layer name of a module: its subpackage, or its own name at the top."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path, root: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = [root.name, *path.relative_to(root).parent.parts]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append(Import(module, node.lineno))
            # ``from kernelyard import blocking`` names a subpackage too.
            found.extend(Import(f"{module}.{alias.name}", node.lineno) for alias in node.names)
    return found


def _loop_starts(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr == "run_until_complete") or (
            isinstance(node, ast.Attribute)
            and node.attr == "run"
            and isinstance(node.value, ast.Name)
            and node.value.id in {"asyncio", "anyio"}
        ):
            lines.append(node.lineno)
    return lines


def violations(root: Path) -> list[str]:
    """Every broken rule under ``root`` (a package directory), as readable lines."""
    found: list[str] = []
    stdlib = sys.stdlib_module_names
    for path in sorted(root.rglob("*.py")):
        here = _part(path, root)
        where = f"{path.relative_to(root.parent)}"
        for imp in _imports(path, root):
            top, _, rest = imp.module.partition(".")
            if top == root.name:
                target = rest.partition(".")[0]
                if not target or target not in LAYERS:
                    continue
                allowed_here = UNIMPORTABLE.get(target)
                if allowed_here is not None and here != target and here not in allowed_here:
                    found.append(f"{where}:{imp.line}: nothing may import {target}/")
                elif here in LAYERS and target != here:
                    upward = LAYERS[target] > LAYERS[here]
                    sideways = LAYERS[target] == LAYERS[here] and (here, target) not in SIDEWAYS
                    if upward or sideways:
                        found.append(f"{where}:{imp.line}: {here} may not import {target}")
            elif top in OWNED and OWNED[top] != here:
                found.append(f"{where}:{imp.line}: only {OWNED[top]}/ may import {top}")
            if here == "wire" and top != root.name:
                if top in WIRE_FORBIDDEN_STDLIB:
                    found.append(f"{where}:{imp.line}: wire/ is sans-I/O but imports {top}")
                elif top not in stdlib and top not in WIRE_ALLOWED_THIRD_PARTY:
                    found.append(f"{where}:{imp.line}: wire/ may not depend on {top}")
            if top == "nest_asyncio":
                found.append(f"{where}:{imp.line}: nest_asyncio is never used")
        if here not in LOOP_STARTERS:
            found.extend(
                f"{where}:{line}: only cli/, blocking/ and kernel/ start loops"
                for line in _loop_starts(path)
            )
    return found


def test_source_tree_follows_the_layer_rules() -> None:
    assert violations(SRC) == []


def test_every_subpackage_has_a_layer() -> None:
    parts = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert parts <= set(LAYERS)


def _write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in path.parents:
        if parent == root.parent:
            break
        (parent / "__init__.py").touch()
    path.write_text(source)


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        ("wire/codec.py", "import zmq\n", "only transport/ may import zmq"),
        ("wire/codec.py", "import socket\n", "wire/ is sans-I/O but imports socket"),
        ("wire/codec.py", "import numpy\n", "wire/ may not depend on numpy"),
        ("wire/codec.py", "from kernelyard.discovery import x\n", "wire may not import discovery"),
        ("wire/codec.py", "from ..manager import kernel\n", "wire may not import manager"),
        ("transport/s.py", "from kernelyard import discovery\n", "transport may not import"),
        ("server/app.py", "from kernelyard.blocking import c\n", "nothing may import blocking/"),
        ("server/app.py", "import kernelyard.cli.main\n", "nothing may import cli/"),
        ("client/c.py", "import httpx\n", "only gateway/ may import httpx"),
        ("manager/m.py", "import traitlets\n", "only cli/ may import traitlets"),
        ("manager/m.py", "import nest_asyncio\n", "nest_asyncio is never used"),
        (
            "client/c.py",
            "import asyncio\nasyncio.run(f())\n",
            "only cli/, blocking/ and kernel/ start",
        ),
        ("client/c.py", "loop.run_until_complete(f())\n", "only cli/, blocking/ and kernel/ start"),
    ],
)
def test_the_checker_catches_violations(
    tmp_path: Path, relative: str, source: str, expected: str
) -> None:
    root = tmp_path / "kernelyard"
    _write(root, relative, source)
    found = violations(root)
    assert any(expected in line for line in found), found


def test_the_checker_allows_the_design(tmp_path: Path) -> None:
    root = tmp_path / "kernelyard"
    _write(root, "wire/codec.py", "import hmac\nimport orjson\nfrom kernelyard.errors import E\n")
    _write(root, "discovery/finder.py", "from kernelyard.provisioning import launch\n")
    _write(root, "transport/s.py", "import zmq.asyncio\nfrom ..wire import codec\n")
    _write(root, "blocking/portal.py", "import asyncio\nasyncio.run(main())\n")
    _write(root, "__init__.py", "from kernelyard.blocking import BlockingKernelClient\n")
    _write(root, "__main__.py", "from kernelyard.cli import main\n")
    assert violations(root) == []
