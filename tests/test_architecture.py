"""The rooms keep to their imports: read from the source (AST), so a breach fails with its file:line."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "extproc"
GENERATED = PACKAGE / "v1"
FILE_IO = frozenset({"os", "pathlib", "io", "shutil", "tempfile", "socket", "subprocess", "importlib", "fcntl"})
NETWORK_AND_WIRE = frozenset({"grpc", "httpx", "envoy", "yaml"})


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) for every import in a file, `from x import y` as `x`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def calls_to(path: Path, name: str) -> Iterator[int]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
            yield node.lineno


def sources(room: str = "") -> list[Path]:
    return sorted(p for p in (PACKAGE / room).rglob("*.py") if GENERATED not in p.parents)


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{line}"


def breaches(files: list[Path], banned: frozenset[str]) -> list[str]:
    return [f"{where(p, line)} imports {module}" for p in files for line, module in imports(p)
            if module.partition(".")[0] in banned]


def test_only_the_edge_imports_envoys_protos() -> None:
    outside = [p for p in sources() if PACKAGE / "edge" not in p.parents]
    assert breaches(outside, frozenset({"envoy"})) == []


def test_core_is_pure_no_network_wire_files_or_environment() -> None:
    core = sources("core")
    found = breaches(core, NETWORK_AND_WIRE | FILE_IO)
    found += [f"{where(p, line)} calls open()" for p in core for line in calls_to(p, "open")]
    assert found == []


def test_core_imports_only_core() -> None:
    found = [f"{where(p, line)} imports {module}" for p in sources("core") for line, module in imports(p)
             if module.startswith("extproc.") and not module.startswith("extproc.core")]
    assert found == []


@pytest.mark.parametrize("room", ["formats"])
def test_formats_speak_no_grpc_and_do_no_io(room: str) -> None:
    assert breaches(sources(room), frozenset({"grpc", "httpx", "envoy"}) | FILE_IO) == []


def reaches(path: Path, banned: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, module) for every import of one of the `banned` modules or of a module inside one."""
    return [(line, module) for line, module in imports(path)
            if any(module == room or module.startswith(f"{room}.") for room in banned)]


FORMATS_DO_NOT_KNOW = ("extproc.translate", "extproc.request", "extproc.core.resolve")


def test_formats_are_a_leaf_knowing_no_translation_request_path_or_resolution() -> None:
    found = [f"{where(p, line)} imports {module}" for p in sources("formats")
             for line, module in reaches(p, FORMATS_DO_NOT_KNOW)]
    assert found == []


def test_the_leaf_check_sees_a_breach(tmp_path: Path) -> None:
    """A formats-like file that reads the translation mark, resolves and plans would be caught; a module that
    only shares a name's start (extproc.translated), or core's own view, would not."""
    bad = tmp_path / "bad.py"
    bad.write_text("from extproc.translate import held\nimport extproc.core.resolve\n"
                   "from extproc.request.plan import Plan\nfrom extproc.translated import x\n"
                   "from extproc.core.view import RequestView\n")
    assert reaches(bad, FORMATS_DO_NOT_KNOW) == [(1, "extproc.translate"), (2, "extproc.core.resolve"),
                                                 (3, "extproc.request.plan")]


def test_the_request_path_knows_no_grpc_or_protobuf() -> None:
    assert breaches([*sources("request"), PACKAGE / "runtime.py"], frozenset({"grpc", "envoy", "google"})) == []


def test_server_wiring_imports_no_envoy_protos() -> None:
    assert breaches([PACKAGE / "server.py"], frozenset({"envoy"})) == []


def test_the_check_sees_a_breach(tmp_path: Path) -> None:
    """The rules above would catch one: a core-like file that imports grpc and opens a file."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom grpc import aio\n\ndef f():\n    return open('x')\n")
    assert [m for _, m in imports(bad)] == ["os", "grpc"]
    assert list(calls_to(bad, "open")) == [5]
