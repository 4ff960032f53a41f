"""The alert rules emwatch raises, with a dense code each for the hot path's integer arrays."""

from __future__ import annotations

RULES: tuple[str, ...] = (
    "zone_exit",         # left an inclusion zone (执行地 county)
    "zone_entry",        # entered an exclusion zone (特定场所)
    "strap_tamper",      # strap opened or cut
    "case_tamper",       # device case opened
    "battery_low",
    "signal_lost",       # 脱管: no fix and no heartbeat for too long
    "location_anomaly",  # physically impossible movement: jamming or spoofing suspected
)
RULE_CODE: dict[str, int] = {name: code for code, name in enumerate(RULES)}

ZONE_EXIT = RULE_CODE["zone_exit"]
ZONE_ENTRY = RULE_CODE["zone_entry"]
STRAP_TAMPER = RULE_CODE["strap_tamper"]
CASE_TAMPER = RULE_CODE["case_tamper"]
BATTERY_LOW = RULE_CODE["battery_low"]
SIGNAL_LOST = RULE_CODE["signal_lost"]
LOCATION_ANOMALY = RULE_CODE["location_anomaly"]
ZONE_RULES = frozenset({ZONE_EXIT, ZONE_ENTRY})
