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
    "curfew_violation",  # outside a scheduled inclusion zone (home at night) while it is in force
    "permit_overdue",    # not back inside the usual zones when a leave permit (外出请假) ended
    "device_separation",  # 人机分离: the bracelet and its paired phone are no longer on one person
    "victim_proximity",  # inside the moving exclusion circle around a protected victim's device
    "subject_contact",   # two subjects forbidden to meet were together for too long
    "zone_approach",     # inside the warning ring (buffer_m) around an exclusion zone
)
RULE_CODE: dict[str, int] = {name: code for code, name in enumerate(RULES)}

ZONE_EXIT = RULE_CODE["zone_exit"]
ZONE_ENTRY = RULE_CODE["zone_entry"]
STRAP_TAMPER = RULE_CODE["strap_tamper"]
CASE_TAMPER = RULE_CODE["case_tamper"]
BATTERY_LOW = RULE_CODE["battery_low"]
SIGNAL_LOST = RULE_CODE["signal_lost"]
LOCATION_ANOMALY = RULE_CODE["location_anomaly"]
CURFEW_VIOLATION = RULE_CODE["curfew_violation"]
PERMIT_OVERDUE = RULE_CODE["permit_overdue"]
ZONE_APPROACH = RULE_CODE["zone_approach"]
ZONE_RULES = frozenset({ZONE_EXIT, ZONE_ENTRY, CURFEW_VIOLATION, ZONE_APPROACH})
DEVICE_SEPARATION = RULE_CODE["device_separation"]
VICTIM_PROXIMITY = RULE_CODE["victim_proximity"]
SUBJECT_CONTACT = RULE_CODE["subject_contact"]
