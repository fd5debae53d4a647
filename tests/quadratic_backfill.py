"""Migration 13 as it was released before its temporary table was indexed, for tests: each check sample's
lookup read the whole table, so the backfill grew with the square of the studies (minutes at 30,000).

Run as ``python -m tests.quadratic_backfill ARGS``: ``alara-edge ARGS`` with this migration 13 in place of
today's, an agent whose upgrade of an older store is slow for a reason a released version really had."""
import sys

from agent.store import migrations

TODAYS = next(sql for version, _, sql in migrations.MIGRATIONS if version == 13)
# as released: today's migration 13 without the two indexes on its temporary table (and their comment)
SQL = "\n".join(line for line in TODAYS.splitlines()
                if "CREATE INDEX event_phantom" not in line and "without these, every lookup" not in line)
assert SQL != TODAYS and "INDEX" not in SQL, "migration 13 changed: update this copy of its released form"


def install() -> None:
    """Put this migration 13 in place of today's in the agent's list of migrations (this process only)."""
    migrations.MIGRATIONS[:] = [(v, name, SQL if v == 13 else sql) for v, name, sql in migrations.MIGRATIONS]


if __name__ == "__main__":
    install()
    from agent.cli import main

    sys.exit(main())
