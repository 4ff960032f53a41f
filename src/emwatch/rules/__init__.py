"""Rules: pure, vectorized functions over a batch of fixes. No I/O, no asyncio."""
