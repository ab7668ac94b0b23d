"""Reference source systems to run locally and in tests: the HTTP API of docs/batch-sources.md
and a PostgreSQL database holding ``customers`` and ``products``."""
