"""Store: PostgreSQL through asyncpg. Fixes go in with COPY; a batch's writes share one transaction."""
