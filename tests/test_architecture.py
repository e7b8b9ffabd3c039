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


# What each room may import of the others: the rooms table of docs/architecture.md, as data. A room is a
# package of extproc, or a top-level module; the processes (runner, server, cli, …) wire everything.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "formats": frozenset({"core"}),
    "translate": frozenset({"core", "formats"}),
    "request": frozenset({"core", "formats", "translate", "usage", "state", "fast", "runtime", "metrics", "logs",
                          "tracing"}),
    "fast": frozenset({"core", "formats", "request", "bootstrap", "runtime"}),
    "usage": frozenset({"core", "formats", "request", "state", "logs", "metrics", "tracing"}),
    "state": frozenset({"core", "auth"}),
    "edge": frozenset({"core", "request", "usage", "fast", "bootstrap", "metrics", "tracing"}),
    "control": frozenset({"core", "auth", "runtime", "v1"}),
    "auth": frozenset({"core", "state", "request", "runtime", "metrics"}),
    "discovery": frozenset({"core", "formats", "request"}),
    "config": frozenset({"core", "formats", "request", "bootstrap"}),
    "bootstrap": frozenset({"core", "formats", "request", "fast", "usage", "translate"}),
    "runtime": frozenset({"core", "discovery"}),
    "console": frozenset({"core", "usage", "state", "runtime", "auth"}),
    "gauges": frozenset({"core", "state", "runtime", "addresses", "usage"}),
}


def room_of(module: str) -> str:
    """`extproc.request.plan` → `request`; `extproc.runtime` → `runtime`; `extproc` → `extproc`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def strays(files: list[Path], room: str) -> list[tuple[Path, int, str]]:
    """(file, line, module) for every import of another room that `room` may not import."""
    allowed = MAY_IMPORT[room] | {room}
    return [(p, line, module) for p in files for line, module in imports(p)
            if module.startswith("extproc.") and room_of(module) not in allowed]


@pytest.mark.parametrize("room", sorted(MAY_IMPORT))
def test_each_room_imports_only_what_the_rooms_table_allows(room: str) -> None:
    files = sources(room) if (PACKAGE / room).is_dir() else [PACKAGE / f"{room}.py"]
    assert [f"{where(p, line)} imports {module}" for p, line, module in strays(files, room)] == []


def test_every_room_of_the_package_is_in_the_table_or_wires_processes() -> None:
    processes = {"__init__", "__main__", "cli", "runner", "server", "top", "logs", "metrics", "tracing", "addresses",
                 "protos", "v1", "data", "__pycache__"}
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert rooms - processes - set(MAY_IMPORT) == set()


def test_the_rooms_check_sees_a_stray(tmp_path: Path) -> None:
    """A formats file that plans an attempt is a stray; one that builds core's request view is not."""
    bad = tmp_path / "bad.py"
    bad.write_text("from extproc.request.plan import Plan\nfrom extproc.core.view import RequestView\n")
    assert strays([bad], "formats") == [(bad, 1, "extproc.request.plan")]
