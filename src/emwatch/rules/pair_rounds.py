"""Rounds for the two-device rules: a batch replayed as if its fixes and events had come one at a time.

Separation and proximity judge a subject on the latest positions of two devices, and their debounce
counts checks, so one check per batch (at its newest fix) made the alerts depend on where the
micro-batches split. Devices that share pair state form a *group* (a subject's bracelet and phone, a
victim's device with the subject kept from them, both subjects of a contact ban); groups never read
each other's state. Round k holds the items (fixes and events) of every group's k-th timestamp, so
running the pair rules round by round is the same as running them item by item (items of one group
with the same timestamp are judged together), at the cost of one pass per round: as many as the
busiest group has timestamps in the batch (usually one).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from emwatch.registry import Registry
from emwatch.rules.pair_state import PairState


def device_groups(registry: Registry, pairs: PairState) -> NDArray[np.int32]:
    """Per device, its pair group (-1: in no two-device rule). Groups are numbered by subject."""
    n_subj = len(registry.subject_ids)
    root = np.arange(n_subj, dtype=np.int32)

    def find(s: int) -> int:
        while root[s] != s:
            root[s] = root[root[s]]
            s = int(root[s])
        return s

    for a, b in zip(registry.ban_a.tolist(), registry.ban_b.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            root[max(ra, rb)] = min(ra, rb)
    for s in range(n_subj):
        root[s] = find(s)
    group = np.full(len(registry.device_ids), -1, dtype=np.int32)
    paired = np.flatnonzero((pairs.bracelet_of >= 0) & (pairs.phone_of >= 0))
    for devices in (pairs.bracelet_of[paired], pairs.phone_of[paired]):
        group[devices] = root[registry.device_subject[devices]]
    watched = np.flatnonzero(pairs.watched)
    owner = registry.device_subject[watched]
    owner = np.where(owner >= 0, owner, registry.device_protects[watched])
    group[watched[owner >= 0]] = root[owner[owner >= 0]]
    return group


def rounds(group: NDArray[np.int32], ts: NDArray[np.int64]) -> NDArray[np.int32]:
    """Round of each item: the rank of its ts among its group's distinct ts (0 for items of no group)."""
    out = np.zeros(len(group), dtype=np.int32)
    rows = np.flatnonzero(group >= 0)
    if len(rows) < 2:
        return out
    rows = rows[np.lexsort((ts[rows], group[rows]))]
    g, t = group[rows], ts[rows]
    start = np.r_[True, g[1:] != g[:-1]]
    step = np.cumsum(start | np.r_[True, t[1:] != t[:-1]])  # a new round at each new ts of a group
    out[rows] = step - step[np.flatnonzero(start)][np.cumsum(start) - 1]
    return out
