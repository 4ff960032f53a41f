"""The command line and the simulated clock."""

from __future__ import annotations

import time

import pytest

from device_sim.__main__ import build_parser
from device_sim.publish import MqttTarget
from device_sim.runner import MAX_BACKFILL_S, SimClock


def test_run_command_parses_the_documented_options() -> None:
    args = build_parser().parse_args(
        "run --api http://127.0.0.1:8000 --mqtt mqtt://127.0.0.1:1883 --subjects 300 --speed 1 "
        "--duration 60 --batch 50 --seed 1 --breach-fraction 0.05".split()
    )
    assert (args.api, args.mqtt, args.subjects, args.speed, args.duration) == (
        "http://127.0.0.1:8000",
        "mqtt://127.0.0.1:1883",
        300,
        1.0,
        60.0,
    )
    assert (args.batch, args.seed, args.breach_fraction) == (50, 1, 0.05)


def test_defaults_run_forever_in_real_time_with_single_fixes() -> None:
    args = build_parser().parse_args(["run"])
    assert (args.speed, args.duration, args.batch, args.subjects) == (1.0, None, 1, 300)


@pytest.mark.parametrize("bad", [["--speed", "0"], ["--subjects", "0"], ["--batch", "-1"]])
def test_rejects_nonsense(bad: list[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", *bad])


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("mqtt://127.0.0.1:1883", MqttTarget("127.0.0.1", 1883)),
        ("mqtt://broker", MqttTarget("broker", 1883)),
        ("mqtt://sim:p%40ss@broker:1884", MqttTarget("broker", 1884, "sim", "p@ss")),
    ],
)
def test_mqtt_url(url: str, target: MqttTarget) -> None:
    assert MqttTarget.parse(url) == target


def test_mqtt_url_must_be_mqtt() -> None:
    with pytest.raises(ValueError, match="mqtt://"):
        MqttTarget.parse("http://broker")


@pytest.mark.parametrize(("speed", "duration_s"), [(1.0, None), (10.0, 60.0), (60.0, None), (1e6, 10.0)])
def test_simulated_time_is_never_in_the_future_nor_too_old(speed: float, duration_s: float | None) -> None:
    clock = SimClock.starting_now(speed, duration_s)
    now_ms = time.time() * 1000
    assert now_ms - MAX_BACKFILL_S * 1000 - 1000 <= clock.start_ms <= now_ms
    for t_ms in range(clock.start_ms, clock.start_ms + 30 * 86_400_000, 3_600_000):
        assert clock.wall_time_of(t_ms) * 1000 >= t_ms  # a fix is sent no earlier than its ts


def test_fast_clock_with_duration_ends_about_now() -> None:
    clock = SimClock.starting_now(10.0, 60.0)
    end_ms = clock.start_ms + 60 * 10 * 1000
    assert abs(clock.wall_time_of(end_ms) - (clock.wall0 + 60)) < 1.5
