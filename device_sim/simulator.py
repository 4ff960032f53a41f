"""The whole simulation: move everyone, report what devices send, and record the ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from device_sim.geo import FloatArray
from device_sim.kinds import ROUTINE
from device_sim.movement import Movement, MovementParams
from device_sim.orders import CONTACT_M, CURFEW_HOME_RADIUS_M
from device_sim.protocol import Message
from device_sim.reporting import NoiseParams, Report, Reporter
from device_sim.scripts import in_curfew, make_plan
from device_sim.truth import VICTIM_ZONE, TruthTracker
from device_sim.victims import VictimReporter
from device_sim.world import VICTIM_PROXIMITY_M, VICTIM_RADIUS_M, BoolArray, IntArray, World

DEFAULT_HORIZON_S = 6 * 3600.0


class Simulator:
    """`step(t_ms)` moves everyone and returns what the devices publish in (last step, t_ms]."""

    def __init__(
        self,
        world: World,
        start_ms: int,
        seed: int | None = None,
        movement: MovementParams | None = None,
        noise: NoiseParams | None = None,
        horizon_s: float = DEFAULT_HORIZON_S,
        track_truth: bool = True,
    ) -> None:
        # Children 0-2 are as before victims' devices existed: adding a 4th leaves the others' draws alone.
        seeds = np.random.SeedSequence([world.seed if seed is None else seed, 1]).spawn(4)
        self.world = world
        self.start_ms = start_ms
        self.plan = make_plan(world, np.random.default_rng(seeds[2]), start_ms, horizon_s)
        self.movement = Movement(
            world, np.random.default_rng(seeds[0]), start_ms, movement or MovementParams(), self.plan
        )
        self.reporter = Reporter(
            world, np.random.default_rng(seeds[1]), start_ms, noise or NoiseParams(), self.plan
        )
        self.victims = VictimReporter(world, np.random.default_rng(seeds[3]), start_ms)
        self.victim_messages: list[Message] = []  # the victims' devices' fixes of the last step
        self.truth = TruthTracker(len(world.subjects)) if track_truth else None
        self._truth_view = _TruthView(world, self.plan.kind) if track_truth else None
        self.t_ms = start_ms

    def step(self, t_ms: int) -> Report:
        """Advance to t_ms (epoch ms, non-decreasing) and return the messages due in (last step, t_ms]."""
        self.movement.advance(t_ms)
        m, d = self.movement, self.world.devices
        bx, by = m.bracelet_xy()
        phone = self.reporter.is_phone
        subject = d.subject_index
        x = np.where(phone, m.x[subject], bx[subject])
        y = np.where(phone, m.y[subject], by[subject])
        report = self.reporter.report(t_ms, x, y, m.indoors[subject])
        self.victim_messages = self.victims.messages(t_ms)
        if self.truth is not None and self._truth_view is not None:
            self._truth_view.observe(self, t_ms)
        self.t_ms = t_ms
        return report

    def ground_truth(self) -> list[dict[str, Any]]:
        """Every violation episode so far (open ones closed at the current time), by start."""
        if self.truth is None:
            raise RuntimeError("this simulator does not track the ground truth")
        self.truth.finish(self.t_ms)
        ankle = self.world.devices.subject_index[~self.reporter.is_phone]
        interval = np.zeros(len(self.world.subjects), dtype=np.int64)
        interval[ankle] = self.world.devices.interval_s[~self.reporter.is_phone] * 1000
        return self.truth.resolved(self.world.subjects.ids, interval)

    def true_lonlat(self) -> tuple[FloatArray, FloatArray]:
        """Ground truth: every subject's noise-free position now."""
        return self.world.geography.frame.to_lonlat(self.movement.x, self.movement.y)

    @property
    def breaching(self) -> BoolArray:
        return self.movement.breaching


class _TruthView:
    """Which subjects each rule needs checking for, precomputed once (the run may have 1M subjects)."""

    def __init__(self, world: World, kind: IntArray) -> None:
        s, d = world.subjects, world.devices
        self.scripted = np.flatnonzero(kind != ROUTINE)
        self.all_subjects = np.arange(len(s))
        self.victims = np.flatnonzero(~np.isnan(s.victim_x))
        self.curfew = np.flatnonzero(s.curfew)
        ankle = np.array([k != "phone" for k in d.kinds], dtype=bool)
        self.ankle_device = np.flatnonzero(ankle)
        self.ankle_subject = d.subject_index[ankle]
        geo = world.geography
        self.exclusions = []
        for area, zone in zip(geo.exclusions_xy, geo.exclusion_features, strict=True):
            group = zone["properties"].get("group_id")
            rows = self.scripted
            if group is not None:
                rows = rows[[group in s.groups[i] for i in rows.tolist()]]
            shapely.prepare(area)
            self.exclusions.append((str(zone["id"]), area, rows))
        inclusions = [str(z["id"]) for z in geo.shared_zones if z["properties"]["kind"] == "inclusion"]
        self.inclusion_id = inclusions[0]

    def observe(self, sim: Simulator, t_ms: int) -> None:
        truth, world, plan, m, r = sim.truth, sim.world, sim.plan, sim.movement, sim.reporter
        assert truth is not None
        s, rows = world.subjects, self.scripted
        x, y = m.x[rows], m.y[rows]
        outside = ~shapely.contains_xy(world.geography.county_xy, x, y)
        permitted = (plan.permit_start_ms[rows] <= t_ms) & (t_ms <= plan.permit_end_ms[rows])
        overdue = t_ms > plan.permit_end_ms[rows]
        truth.observe(t_ms, "zone_exit", rows, outside & ~permitted & ~overdue, self.inclusion_id)
        truth.observe(t_ms, "permit_overdue", rows, outside & overdue)
        for zone_id, area, zrows in self.exclusions:
            inside = shapely.contains_xy(area, m.x[zrows], m.y[zrows])
            truth.observe(t_ms, "zone_entry", zrows, inside, zone_id)
        v = self.victims
        to_victim = np.hypot(m.x[v] - s.victim_x[v], m.y[v] - s.victim_y[v])
        truth.observe(t_ms, "zone_entry", v, to_victim <= VICTIM_RADIUS_M, VICTIM_ZONE)
        truth.observe(t_ms, "victim_proximity", v, to_victim < VICTIM_PROXIMITY_M)
        c = self.curfew
        away = np.hypot(m.x[c] - s.home_x[c], m.y[c] - s.home_y[c]) > CURFEW_HOME_RADIUS_M
        truth.observe(t_ms, "curfew_violation", c, away & in_curfew(t_ms))
        pairs = np.flatnonzero(plan.partner > np.arange(len(plan.partner)))
        other = plan.partner[pairs]
        met = np.hypot(m.x[pairs] - m.x[other], m.y[pairs] - m.y[other]) < CONTACT_M
        truth.observe(t_ms, "subject_contact", pairs, met, other=other)
        a, subj = self.ankle_device, self.ankle_subject
        truth.observe(t_ms, "device_separation", subj, r.separated[a])
        truth.observe(t_ms, "strap_tamper", subj, r.strap_open[a])
        truth.observe(t_ms, "signal_lost", subj, r.silent(t_ms)[a])
        # The rule is per subject: a low phone is as much the subject's battery_low as a low bracelet.
        low = np.zeros(len(s), dtype=bool)
        np.logical_or.at(low, world.devices.subject_index, r.battery_low)
        truth.observe(t_ms, "battery_low", self.all_subjects, low)
        truth.observe(t_ms, "case_tamper", subj, r.case_opened[a])
