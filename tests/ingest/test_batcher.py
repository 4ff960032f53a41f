"""BatchBuilder turns JSON fixes into columns field by field: absent optional fields become the sentinels."""

from __future__ import annotations

import math

from emwatch.ingest.batcher import BatchBuilder
from emwatch.ingest.decode import MessageDecoder
from emwatch.model import NO_BATT, NO_SEQ

NOW = 1_790_000_000_000
decoder = MessageDecoder()


def test_json_fixes_become_columns_with_sentinels_for_absent_fields() -> None:
    batch = (b'[{"dev": "a", "ts": %d, "lat": 1.5, "lon": 2.5},'
             b' {"dev": "b", "ts": %d, "lat": 3, "lon": 4, "acc": 7, "src": "wifi", "batt": 55, "seq": 9}]'
             % (NOW, NOW + 1))
    single = b'{"ts": %d, "lat": 5, "lon": 6, "src": "lbs", "batt": 0}' % (NOW + 2)
    builder = BatchBuilder()
    builder.add(decoder.decode("em/v1/gateways/g/batch", batch, NOW), (1, 1))
    builder.add(decoder.decode("em/v1/devices/c/fix", single, NOW), (2, 1))
    assert builder.fix_count == 3
    fixes = builder.build().fixes
    assert fixes.device_ids == ["a", "b", "c"]
    assert fixes.ts.tolist() == [NOW, NOW + 1, NOW + 2]
    assert fixes.lat.tolist() == [1.5, 3.0, 5.0] and fixes.lon.tolist() == [2.5, 4.0, 6.0]
    assert math.isnan(fixes.acc[0]) and fixes.acc[1] == 7.0 and math.isnan(fixes.acc[2])
    assert fixes.src.tolist() == [0, 1, 2]
    assert fixes.batt.tolist() == [NO_BATT, 55, 0]
    assert fixes.seq.tolist() == [NO_SEQ, 9, NO_SEQ]


def test_a_batch_with_a_fix_outside_the_time_window_keeps_the_others_in_order() -> None:
    batch = (b'[{"dev": "a", "ts": %d, "lat": 1, "lon": 2}, {"dev": "b", "ts": %d, "lat": 1, "lon": 2},'
             b' {"dev": "c", "ts": %d, "lat": 1, "lon": 2}]' % (NOW, NOW + 10 * 60_000, NOW - 1))
    decoded = decoder.decode("em/v1/gateways/g/batch", batch, NOW)
    assert [d for d, _ in decoded.fixes] == ["a", "c"]
    assert len(decoded.dead) == 1 and "in the future" in decoded.dead[0].reason
    builder = BatchBuilder()
    builder.add(decoded)
    assert builder.build().fixes.ts.tolist() == [NOW, NOW - 1]
