"""Simulated EM devices: a seeded demo world whose bracelets and phones publish fixes over MQTT.

Modules: `world` (who and where), `kinds`/`scripts` (scripted violations and near-misses),
`movement` (how they move), `noise`/`reporting` (what devices send), `truth` (ground truth),
`simulator` (`Simulator`: all of it per step), `protocol` (wire encoding), `publish` (MQTT),
`setup` (HTTP API), `runner` (live loop), `trace`/`replay` (record and replay), `score` (quality).
"""

from device_sim.runner import run_simulation

__all__ = ["run_simulation"]
