"""The chaos run's short mode: service SIGKILLs, graceful broker restarts and PostgreSQL restarts while
numbered fixes stream in; afterwards every PUBACKed fix is stored exactly once and every expected
zone_entry episode exists exactly once (benchmarks/chaos.py does the checking)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emwatch.embedded import _mosquitto_binary, _pg_bindir

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    _mosquitto_binary() is None or _pg_bindir() is None,
    reason="needs Mosquitto (persistence) and PostgreSQL server binaries",
)


def test_short_chaos_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    figures_path = tmp_path / "chaos.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "chaos.py"), "--short", "--seed", "1",
         "--json", str(figures_path), "--keep", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=150, check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    figures = json.loads(figures_path.read_text())
    assert figures["faults_total"] >= 5 and len(figures["faults"]) == 3, figures  # all three kinds happened
    assert figures["fixes_acked"] > 500, figures
    assert figures["fixes_lost"] == 0 and figures["fixes_duplicated"] == 0, figures
    assert figures["alerts_expected"] > 20 and figures["alerts_found"] == figures["alerts_expected"], figures
