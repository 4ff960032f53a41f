"""Machine description, printed tables, the dated RESULTS.md row and results/latest.json."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
LATEST_JSON = HERE / "results" / "latest.json"
SECTION = "## Performance: hot path over both cores"  # the section new rows go to


def machine() -> dict[str, Any]:
    """Cores, RAM and CPU model: the figures mean little without them."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu": model, "python": platform.python_version()}


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A fixed-width text table."""
    cells = [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = [title, "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "-" if v is None else str(v)


def write(
    command: str, figures: dict[str, Any], details: dict[str, Any], quick: bool, out: Path = HERE
) -> None:
    """Append a dated row under '## Performance' in out/RESULTS.md; write out/results/latest.json
    (a quick run into the committed benchmarks/ folder leaves latest.json alone: it is no figure)."""
    results_md, latest_json = out / RESULTS_MD.name, out / "results" / LATEST_JSON.name
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    m = machine()
    doc = {**figures, "machine": m, "date": now, "command": command, "quick": quick, "details": details}
    if not quick or out != HERE:
        latest_json.parent.mkdir(parents=True, exist_ok=True)
        latest_json.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    row = " | ".join([
        now, f"`{command}`", f"{m['cores']} cores / {m['ram_gib']} GiB / {m['cpu']}",
        *(_fmt(figures.get(k)) for k in COLUMNS),
    ])
    text = results_md.read_text() if results_md.exists() else "# Benchmark results\n"
    if SECTION not in text:
        text = text.rstrip("\n") + "\n\n" + SECTION + "\n\n" + PREAMBLE + "\n\n" + HEADER + "\n"
    head, _, tail = text.partition(SECTION)
    # the row goes under the section's table (notes may follow it), before any section after it
    body, sep, rest = tail.partition("\n## ")
    lines = body.rstrip("\n").split("\n")
    # below the section's first table (the runs; later notes may hold tables of their own), after the
    # header's separator too: a new section's first row goes below it
    first = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    last_row = len(lines) - 1 if first is None else first
    while first is not None and last_row + 1 < len(lines) and lines[last_row + 1].startswith("|"):
        last_row += 1
    lines.insert(last_row + 1, "| " + row + " |")
    body = "\n".join(lines) + "\n"
    results_md.write_text(head + SECTION + body + (("\n" + sep.lstrip("\n") + rest) if sep else ""))


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(type(v))


COLUMNS = [
    "hotpath_kernel_threads", "hotpath_fixes_per_s", "hotpath_fixes_per_s_1thread", "hotpath_fixes_per_s_10k",
    "hotpath_ratio_vs_naive", "hotpath_ratio_vs_postgis",
    "hotpath_engine_fixes_per_s", "hotpath_engine_ratio_vs_naive", "hotpath_engine_ratio_vs_postgis",
    "e2e_max_sustained_fixes_per_s_batch", "e2e_max_sustained_fixes_per_s_batch_bin",
    "e2e_max_sustained_fixes_per_s_single", "e2e_latency_p50_ms", "e2e_latency_p99_ms",
    "e2e_latency_p99_ms_batch_bin", "rss_bytes_per_device", "startup_s_700k", "registry_build_s_700k",
]
PREAMBLE = (
    "Appended by `make bench` (`benchmarks/run.py`); `--quick` rows are CI smoke runs, not figures. "
    "Hot path at the largest scene (700k subjects), median fixes/s per 2,000-fix batch: containment "
    "(`hotpath.containment_pass`: device lookup, event-time order, H3 cells, `evaluate_containment`) "
    "over a kernel thread per core (`EMWATCH_KERNEL_THREADS=0`: the compiled kernels split each "
    "batch, emwatch/kernel_threads.py; the service's default is 1), the same on one thread, and at 10k "
    "subjects (kernel threads); the whole engine (`RuleEngine.evaluate` + `EpisodeBook.update`, every "
    "rule), timed in turn on the same batches. × naive and × PostGIS compare one-thread containment "
    "with single-threaded baselines answering the same question (they find the same inside pairs: "
    "printed per run), measured in the same run; PostGIS runs up to 100k subjects, so its ratios are "
    "from that scene. E2E: highest sustained rate through Mosquitto and PostgreSQL for JSON gateway "
    "batches, packed binary batches (docs/protocol.md 1.4) and one fix per QoS 1 message; "
    "fix→WebSocket alert latency p50/p99 at the highest sustained JSON batch rate, p99 also at the "
    "highest packed rate. Startup: the service's registry load from PostgreSQL at 700k subjects "
    "(`--startup`, benchmarks/startup.py; '-' when not run); registry build: `Registry.build` alone "
    "from in-memory rows. RSS: the live registry and rule state per device (benchmarks/run.py "
    "memory_probe). Details of each run: `benchmarks/results/latest.json`."
)
HEADER = (
    "| date | command | machine | kernel threads | containment fixes/s | 1 thread | containment 10k | "
    "× naive | × PostGIS | engine fixes/s | engine × naive | engine × PostGIS | e2e batch fixes/s | "
    "e2e packed fixes/s | e2e single fixes/s | p50 ms | p99 ms | packed p99 ms | RSS B/device | "
    "startup 700k s | registry build 700k s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)
