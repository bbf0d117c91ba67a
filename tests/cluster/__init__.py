"""Several real processes on one database (PostgreSQL schema or SQLite file)."""
