"""Tables, engine/session, embedded Postgres bootstrap and migrations."""
