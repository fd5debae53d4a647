"""Migration 13 as it was released before its temporary table was indexed, for tests: each check sample's
lookup read the whole table, so the backfill grew with the square of the studies (minutes at 30,000).

Run as ``python -m tests.quadratic_backfill ARGS``: ``alara-edge ARGS`` with this migration 13 in place of
today's, an agent whose upgrade of an older store is slow for a reason a released version really had."""
import sys

SQL = """
    -- the phantom of the values kept before migration 12, from the stored events (as agent.checks.tables.phantom_of
    -- reads it: "head" if the name says head or 16 cm, else "body"), so that head and body medians stay apart
    CREATE TEMP TABLE event_phantom AS
        SELECT irradiation_event_uid AS uid, study_instance_uid AS study,
               lower(coalesce(json_extract(record, '$.event_type'), '')) LIKE '%constant angle%' AS localizer,
               CASE WHEN coalesce(json_extract(record, '$.phantom'), '') = '' THEN NULL
                    WHEN lower(json_extract(record, '$.phantom')) LIKE '%head%'
                         OR json_extract(record, '$.phantom') LIKE '%16%' THEN 'head'
                    ELSE 'body' END AS phantom
        FROM events;
    UPDATE check_samples SET phantom = (SELECT phantom FROM event_phantom WHERE uid = check_samples.subject)
        WHERE scope = 'per_event' AND phantom IS NULL;
    UPDATE check_samples SET phantom = (SELECT MIN(phantom) FROM event_phantom WHERE study = check_samples.subject
                                        AND NOT localizer)
        WHERE scope = 'per_examination' AND phantom IS NULL
          AND 1 = (SELECT COUNT(DISTINCT coalesce(phantom, '-')) FROM event_phantom
                   WHERE study = check_samples.subject AND NOT localizer)
          AND (SELECT MIN(phantom) FROM event_phantom WHERE study = check_samples.subject AND NOT localizer)
              IS NOT NULL;
    DROP TABLE event_phantom;
    """


def install() -> None:
    """Put this migration 13 in place of today's in the agent's list of migrations (this process only)."""
    from agent.store import migrations

    migrations.MIGRATIONS[:] = [(v, name, SQL if v == 13 else sql) for v, name, sql in migrations.MIGRATIONS]


if __name__ == "__main__":
    install()
    from agent.cli import main

    sys.exit(main())
