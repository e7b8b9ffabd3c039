"""Compiling this project's own protos: the generated modules and the descriptor set Envoy's transcoder reads.

The generated files are committed (runtime needs only grpcio and protobuf); `python -m extproc.protos`
regenerates them, and a test fails when they are stale.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import google.api
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
PROTO_FILES = ("extproc/v1/models.proto", "extproc/v1/auth.proto")
DESCRIPTOR_SET = Path(__file__).resolve().parent / "v1" / "extproc.pb"


def compile_protos(out_dir: Path, descriptor_set: Path) -> None:
    """Generate Python modules under out_dir and a self-contained descriptor set (imports included)."""
    includes = [str(PROTO_DIR), str(Path(grpc_tools.__file__).parent / "_proto"),
                str(Path(google.api.__path__[0]).parent.parent)]
    args = ["protoc", *(f"-I{i}" for i in includes), f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
            f"--pyi_out={out_dir}", "--include_imports", f"--descriptor_set_out={descriptor_set}", *PROTO_FILES]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))


def generated_files(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted((root / "extproc" / "v1").glob("*")):
        if path.suffix in (".py", ".pyi", ".pb") and path.name != "__init__.py":
            out[path.name] = path.read_bytes()
    return out


def main() -> int:
    compile_protos(ROOT, DESCRIPTOR_SET)
    print(f"generated {', '.join(generated_files(ROOT))}")
    return 0


def stale() -> list[str]:
    """Generated files that differ from a fresh compile."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        (fresh_root / "extproc" / "v1").mkdir(parents=True)
        compile_protos(fresh_root, fresh_root / "extproc" / "v1" / "extproc.pb")
        fresh, current = generated_files(fresh_root), generated_files(ROOT)
    return sorted(name for name in fresh.keys() | current.keys() if fresh.get(name) != current.get(name))


if __name__ == "__main__":
    sys.exit(main())
