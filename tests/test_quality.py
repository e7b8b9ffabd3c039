"""ruff and mypy --strict over the package are part of the suite, so a lint or type error fails `make test`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    result = subprocess.run([str(BIN / "ruff"), "check", "extproc", "tests", "bench"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = subprocess.run([str(BIN / "mypy")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_lock_agrees_with_pyproject() -> None:
    """`make test` installs exactly uv.lock; a dependency edited in pyproject.toml without `make lock` fails here
    (offline: an unchanged project needs no index to be checked)."""
    uv = ROOT / ".uv" / "bin" / "uv"
    assert uv.exists(), "uv is missing: `make test` installs it (from .ci/uv.txt, hashes checked)"
    result = subprocess.run([str(uv), "lock", "--check", "--offline"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, "pyproject.toml and uv.lock disagree: run `make lock`\n" + result.stderr
