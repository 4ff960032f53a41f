"""Command line: `python -m device_sim run|record|replay|score ...` (also installed as `emwatch-sim`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from device_sim.noise import NOISE_PROFILES
from device_sim.runner import run_simulation
from device_sim.score import Tolerance, alerts_from_events, format_table, score
from device_sim.trace import DEFAULT_START_MS, WorldSpec, parse_start, record, shift_truth


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emwatch-sim", description="Simulated EM bracelets and phones.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="set up the demo world via the API, then publish fixes over MQTT")
    run.add_argument("--api", default="http://127.0.0.1:8000", help="emwatch HTTP API base URL")
    run.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="broker, mqtt://[user:pass@]host[:port]")
    run.add_argument("--subjects", type=_positive_int, default=300, help="number of simulated subjects")
    run.add_argument("--speed", type=_positive_float, default=1.0, help="simulated seconds per wall second")
    run.add_argument(
        "--duration",
        type=_positive_float,
        default=None,
        metavar="S",
        help="stop after S wall-clock seconds (default: run until interrupted)",
    )
    run.add_argument(
        "--batch",
        type=_positive_int,
        default=1,
        metavar="N",
        help="N > 1: publish per-gateway batches of up to N fixes instead of single fixes",
    )
    run.add_argument("--seed", type=int, default=1, help="world and movement seed")
    run.add_argument(
        "--breach-fraction", type=float, default=0.05, help="share of subjects who breach a zone"
    )
    parser.add_argument("--log-level", default="INFO")
    _add_record(commands)
    _add_replay(commands)
    _add_score(commands)
    return parser


def _add_record(commands: Any) -> None:
    rec = commands.add_parser("record", help="simulate without a service and write a trace + ground truth")
    rec.add_argument("trace", type=Path, help="trace file to write (.jsonl, or .jsonl.gz)")
    rec.add_argument("--truth", type=Path, required=True, help="ground-truth JSON file to write")
    rec.add_argument("--subjects", type=_positive_int, default=40)
    rec.add_argument("--seed", type=int, default=1)
    rec.add_argument("--hours", type=_positive_float, default=6.0, help="simulated duration")
    rec.add_argument("--start", type=parse_start, default=DEFAULT_START_MS, help="ISO time with zone")
    rec.add_argument("--breach-fraction", type=float, default=0.4, help="share scripted to violate")
    rec.add_argument("--near-miss-fraction", type=float, default=0.2, help="share scripted to nearly violate")
    rec.add_argument("--noise", choices=NOISE_PROFILES, default="clean")
    rec.add_argument("--namespace", default="", help="prefix of every subject and device id")
    rec.add_argument("--batch", type=_positive_int, default=1, metavar="N")


def _add_replay(commands: Any) -> None:
    rep = commands.add_parser("replay", help="publish a recorded trace over MQTT, timestamps rebased to now")
    rep.add_argument("trace", type=Path)
    rep.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    rep.add_argument("--speed", type=float, default=50.0, help="trace seconds per wall second; 0 = max")
    rep.add_argument("--api", default=None, help="set the trace's world up through this API first")
    rep.add_argument("--token", default=None, help="bearer token for --api")
    rep.add_argument("--truth", type=Path, help="ground truth of the trace, to write rebased as --truth-out")
    rep.add_argument("--truth-out", type=Path, help="where to write the rebased ground truth")


def _add_score(commands: Any) -> None:
    sc = commands.add_parser("score", help="score a service's alerts against a ground truth")
    sc.add_argument("--truth", type=Path, required=True, help="ground truth (rebased if it was replayed)")
    sc.add_argument("--alerts", required=True, help="API base URL, or a JSON / JSON Lines file of alerts")
    sc.add_argument("--token", default=None, help="bearer token for an API URL")
    sc.add_argument("--early", type=float, default=Tolerance().early_s, help="seconds an alert may precede")
    sc.add_argument("--late", type=float, default=Tolerance().late_s, help="seconds an alert may follow")
    sc.add_argument("--report", type=Path, help="write the JSON report here")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `emwatch-sim` / `python -m device_sim`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per setup request drowns the progress
    if args.command == "record":
        spec = WorldSpec(
            args.subjects, args.seed, args.breach_fraction, args.near_miss_fraction, args.namespace
        )
        counts = record(spec, args.trace, args.truth, duration_s=args.hours * 3600, start_ms=args.start,
                        noise=args.noise, batch=args.batch)  # fmt: skip
        print(json.dumps(counts))
    elif args.command == "replay":
        asyncio.run(_replay(args))
    elif args.command == "score":
        _score(args)
    else:
        asyncio.run(_run(args))


async def _replay(args: argparse.Namespace) -> None:
    from device_sim.orders import build_orders
    from device_sim.replay import rebase_shift_ms, replay
    from device_sim.setup import setup_via_api
    from device_sim.trace import read_header, world_digest

    header = read_header(args.trace)
    truth = json.loads(args.truth.read_text("utf-8")) if args.truth else None
    # The shift is fixed before setup: permits and curfew windows are set up moved by it.
    shift = rebase_shift_ms(header["t0"], header["t1"], args.speed, int(time.time() * 1000))
    if args.api:
        world = WorldSpec(**header["world"]).build()
        if world_digest(world) != header["world_digest"]:
            sys.exit("this trace was recorded by a different world generator; record it again")
        if truth is None:
            print("no --truth: leave permits are not set up (a permitted trip is an exit)", file=sys.stderr)
        orders = build_orders(world, truth["permits"] if truth else [], shift)
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        async with httpx.AsyncClient(base_url=args.api, timeout=30.0, headers=headers) as client:
            await setup_via_api(args.api, world, client=client, orders=orders)
    await replay(args.trace, args.mqtt, args.speed, shift_ms=shift)
    if truth is not None and args.truth_out:
        rebased = shift_truth(truth, shift)
        rebased["replay"] = {"speed": args.speed, "clock": "wall"}  # the service's timer ran on its own clock
        args.truth_out.write_text(json.dumps(rebased, indent=1) + "\n", "utf-8")
    print(json.dumps({"shift_ms": shift}))


def _score(args: argparse.Namespace) -> None:
    truth = json.loads(args.truth.read_text("utf-8"))
    source = str(args.alerts)
    if source.startswith(("http://", "https://")):
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        response = httpx.get(source.rstrip("/") + "/api/alerts", params={"limit": 10_000}, headers=headers)
        response.raise_for_status()
        rows = response.json()
    else:
        text = Path(source).read_text("utf-8").strip()
        rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()]
    report = score(truth, alerts_from_events(rows), Tolerance(args.early, args.late))
    print(format_table(report))
    if args.report:
        args.report.write_text(json.dumps(report, indent=1) + "\n", "utf-8")


async def _run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Finish the current step and disconnect cleanly instead of dying mid-publish.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await run_simulation(
        args.api,
        args.mqtt,
        args.subjects,
        args.speed,
        args.duration,
        args.seed,
        args.batch,
        stop,
        breach_fraction=args.breach_fraction,
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


if __name__ == "__main__":
    main()
