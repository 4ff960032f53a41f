"""Simulated EM devices: a seeded demo world whose bracelets and phones publish fixes over MQTT.

Modules: `world` (who and where), `movement` (how they move, `Simulator`), `reporting` (what devices
report), `protocol` (wire encoding), `publish` (MQTT), `setup` (HTTP API), `runner` (the loop).
"""

from device_sim.runner import run_simulation

__all__ = ["run_simulation"]
