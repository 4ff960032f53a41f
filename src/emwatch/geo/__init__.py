"""Pure geometry: zones, their H3 index, distances. No I/O, no asyncio."""
