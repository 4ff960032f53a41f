"""A benchmark run's dated row goes under the runs table of the performance section, not under a table
that a later note in that section holds."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import report

NOTES = """
### Session notes

| devices | key | figure |
|---|---|---|
| 700,000 | minute | 6.66 |

- a note.
"""


def test_a_run_s_row_follows_the_runs_table_not_a_table_in_the_notes(tmp_path: Path) -> None:
    earlier = "| 2026-01-01 00:00 UTC | `make bench` | x |"
    (tmp_path / "RESULTS.md").write_text(
        f"# Benchmark results\n\n{report.SECTION}\n\nPreamble.\n\n| date | command | machine |\n|---|---|---|\n"
        f"{earlier}\n{NOTES}\n## A later section\n\ntext\n"
    )
    report.write("make bench", {}, {}, quick=True, out=tmp_path)
    lines = (tmp_path / "RESULTS.md").read_text().splitlines()
    runs = lines.index(earlier)
    assert lines[runs + 1].startswith("| 20") and "`make bench`" in lines[runs + 1]
    assert lines[runs + 2] == ""  # the runs table ends there
    assert "| 700,000 | minute | 6.66 |" in lines and lines.index("| 700,000 | minute | 6.66 |") + 1 < len(lines)
    after_notes = lines[lines.index("| 700,000 | minute | 6.66 |") + 1]
    assert after_notes == ""  # nothing appended to the notes' table
    assert lines[-3:] == ["## A later section", "", "text"]
