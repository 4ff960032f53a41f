"""Command line: `python -m device_sim run ...` (also installed as `emwatch-sim`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from device_sim.runner import run_simulation


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
    run.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `emwatch-sim` / `python -m device_sim`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per setup request drowns the progress
    asyncio.run(_run(args))


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
