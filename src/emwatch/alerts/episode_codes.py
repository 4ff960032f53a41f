"""Episode keys and their int64 codes under one registry, and sorted code sets.

A code packs (subject, rule, zone) densely, so a whole batch of checks finds its keys' state by one
binary search (`is_member`) instead of hashing (np.isin / np.unique / np.union1d are several times
slower at our sizes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from emwatch.model import Observations
from emwatch.registry import Registry
from emwatch.rules.catalog import RULE_CODE, RULES, ZONE_RULES

# Enough for every key a batch touches many times over; cleared when full rather than grown forever.
KEY_CACHE_MAX = 1 << 16
_ZONE_RULE = np.isin(np.arange(len(RULES)), list(ZONE_RULES))


@dataclass(frozen=True, slots=True)
class EpisodeKey:
    """Identity of an episode that survives registry reloads and restarts ('' when no zone)."""

    subject_id: str
    rule: str
    zone_id: str


def is_member(sorted_codes: NDArray[np.int64], values: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Membership by binary search in a sorted array: no hashing of the (large) sorted side."""
    if len(sorted_codes) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_codes, values), len(sorted_codes) - 1)
    return np.asarray(sorted_codes[at] == values)


def sorted_unique(values: NDArray[np.int64]) -> NDArray[np.int64]:
    """np.unique by sort and neighbour compare."""
    out = np.sort(values)
    if len(out) > 1:
        out = out[np.concatenate(([True], out[1:] != out[:-1]))]
    return out


class CodeSet:
    """A sorted array of distinct codes, changed by the few codes a batch touched."""

    __slots__ = ("codes",)

    def __init__(self, codes: NDArray[np.int64]) -> None:
        self.codes = codes

    def __len__(self) -> int:
        return len(self.codes)

    def member(self, values: NDArray[np.int64]) -> NDArray[np.bool_]:
        return is_member(self.codes, values)

    def place(self, codes: NDArray[np.int64], member: NDArray[np.bool_]) -> None:
        """Make `codes[i]` a member exactly when `member[i]` (a code may not be both kept and dropped)."""
        current = self.codes
        drop = codes[~member]
        if len(drop) and len(current):
            at = np.minimum(np.searchsorted(current, drop), len(current) - 1)
            current = np.delete(current, at[current[at] == drop])
        add = codes[member]
        if len(add):
            add = sorted_unique(add[~is_member(current, add)])
            current = np.insert(current, np.searchsorted(current, add), add)
        self.codes = current


class FlaggedCodes:
    """A sorted array of distinct codes, each with a byte of flags; a code whose flags drop to 0 leaves."""

    __slots__ = ("codes", "flags")

    def __init__(self, codes: NDArray[np.int64], flags: NDArray[np.uint8]) -> None:
        order = np.argsort(codes)
        self.codes, self.flags = codes[order], flags[order]

    def __len__(self) -> int:
        return len(self.codes)

    def flags_of(self, values: NDArray[np.int64]) -> NDArray[np.uint8]:
        """Each value's flags, 0 for a code not held."""
        codes = self.codes
        if len(codes) == 0:
            return np.zeros(len(values), dtype=np.uint8)
        at = np.minimum(np.searchsorted(codes, values), len(codes) - 1)
        return np.where(codes[at] == values, self.flags[at], np.uint8(0))

    def set(self, codes: NDArray[np.int64], flags: NDArray[np.uint8]) -> None:
        """Give each of `codes` (distinct) its `flags`, adding and dropping codes as needed."""
        current, held = self.codes, self.flags
        at = np.minimum(np.searchsorted(current, codes), max(len(current) - 1, 0))
        found = current[at] == codes if len(current) else np.zeros(len(codes), dtype=bool)
        held[at[found]] = flags[found]
        if (flags[found] == 0).any():
            keep = held != 0
            current, held = current[keep], held[keep]
        add = ~found & (flags != 0)
        if add.any():
            new, new_flags = codes[add], flags[add]
            order = np.argsort(new)
            where = np.searchsorted(current, new[order])
            current, held = np.insert(current, where, new[order]), np.insert(held, where, new_flags[order])
        self.codes, self.flags = current, held


class KeyCodes:
    """The code of every episode key one registry can address, and the key of a code (cached)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.subject_index = {s: i for i, s in enumerate(registry.subject_ids)}
        self.n_zones = len(registry.zones.zones) + 1
        self._keys: dict[int, EpisodeKey] = {}
        self._zone_ids: dict[int, str] = {}  # by zone index: a zone's id is costly to reach one by one

    def code_of(self, key: EpisodeKey) -> int | None:
        """None when the registry no longer knows the key's subject, rule or zone."""
        subject = self.subject_index.get(key.subject_id)
        zone = self.registry.zones.index_of.get(key.zone_id) if key.zone_id else -1
        rule = RULE_CODE.get(key.rule)
        if subject is None or rule is None or zone is None or (key.zone_id and zone < 0):
            return None
        return (subject * len(RULES) + rule) * self.n_zones + zone + 1

    def codes(self, keys: Iterable[EpisodeKey]) -> NDArray[np.int64]:
        """Sorted codes of the addressable `keys`."""
        return np.array(sorted(c for k in keys if (c := self.code_of(k)) is not None), dtype=np.int64)

    def of_rows(self, obs: Observations) -> NDArray[np.int64]:
        return (obs.subject.astype(np.int64) * len(RULES) + obs.rule) * self.n_zones + obs.zone + 1

    def key_of(self, code: int) -> EpisodeKey:
        # The same key object for the same code: state dicts then match it by identity, not equality.
        key = self._keys.get(code)
        if key is None:
            if len(self._keys) >= KEY_CACHE_MAX:
                self._keys.clear()
            rest, zone = divmod(code, self.n_zones)
            subject, rule = divmod(rest, len(RULES))
            zone_id = self._zone_id(zone - 1) if zone > 0 else ""
            key = self._keys[code] = EpisodeKey(self.registry.subject_ids[subject], RULES[rule], zone_id)
        return key

    def keys_of(self, codes: list[int]) -> list[EpisodeKey]:
        """`key_of` of each code (the same cached objects), decoding the uncached codes together."""
        keys = self._keys
        missing = [c for c in codes if c not in keys]
        if missing:
            if len(keys) + len(missing) > KEY_CACHE_MAX:
                keys.clear()
                missing = codes
            rest, zone = np.divmod(np.array(missing, dtype=np.int64), self.n_zones)
            subject, rule = np.divmod(rest, len(RULES))
            subject_ids, zone_id = self.registry.subject_ids, self._zone_id
            for c, s, r, z in zip(missing, subject.tolist(), rule.tolist(), zone.tolist(), strict=True):
                if c not in keys:  # a code twice in `codes`: one key object
                    keys[c] = EpisodeKey(subject_ids[s], RULES[r], zone_id(z - 1) if z > 0 else "")
        return [keys[c] for c in codes]

    def _zone_id(self, zone: int) -> str:
        found = self._zone_ids.get(zone)
        if found is None:
            if len(self._zone_ids) >= KEY_CACHE_MAX:
                self._zone_ids.clear()
            id_at = getattr(self.registry.zones.index_of, "id_at", None)  # skips making a zone view
            found = id_at(zone) if id_at is not None else self.registry.zones.zones[zone].id
            self._zone_ids[zone] = found
        return found

    def zone_pairs(self, codes: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Which codes are of a zone rule about a zone."""
        return np.asarray(_ZONE_RULE[(codes // self.n_zones) % len(RULES)] & (codes % self.n_zones > 0))

    def subject_zone(self, codes: NDArray[np.int64]) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        return (
            (codes // self.n_zones // len(RULES)).astype(np.int32),
            (codes % self.n_zones - 1).astype(np.int32),
        )
