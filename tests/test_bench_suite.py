"""The benchmark suite's smoke run: every path, growth and memory measurement runs end to end and reports,
a few seconds each, so the suite cannot rot. No figure is asserted: speed is measured, never tested."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.first
def test_the_benchmark_suite_runs_every_measurement_and_writes_its_report(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk): the suite's load comes from it")
    # user_config: where a gateway keeps its accounts and usage unless its config names a place
    out, user_config = tmp_path / "out", tmp_path / "user-config"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "suite.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "XDG_CONFIG_HOME": str(user_config)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (user_config / "extproc").exists()  # every gateway of the bench keeps its store in the run's directory
    report = json.loads((out / "benchmarks.json").read_text())
    assert set(report["paths"]) == {"bare", "direct", "full", "alias", "accounting", "keyed", "login", "translated",
                                    "failover", "bare-stream", "stream-chat", "stream-messages"}
    assert all(f["rps"] > 0 and f["errors"] == 0 for by in report["paths"].values() for f in by.values())
    assert [row["bytes"] for row in report["bodies"]] == [1024, 102400]
    assert [row["models"] for row in report["registries"]] == [15, 1000]
    assert report["streams"]["opened"] == report["streams"]["streams"] == 20
    assert report["memory"][-1]["requests"] >= 2000 and report["workers"]["workers"] >= 2
    text = (out / "benchmarks.md").read_text()
    assert "| direct: " in text and "## Open streams" in text and "LiteLLM proxy not measured" in text
    assert "| stream-chat: " in text and "## Targets" in text and [t["mark"] for t in report["targets"]][-1] == \
        "not measured"  # the burst is bench/burst.py's
    assert (out / "benchmarks.png").read_bytes().startswith(b"\x89PNG")
