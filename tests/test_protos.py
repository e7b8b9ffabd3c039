"""The generated code and descriptor set in extproc/v1 match protos/: regenerate with `python -m extproc.protos`."""

from __future__ import annotations

from extproc.protos import stale


def test_generated_files_are_current() -> None:
    assert stale() == [], "generated files are stale: run .venv/bin/python -m extproc.protos"
