"""Explicit, versioned schema migrations.

Each entry is ``(version, name, sql)``; versions only ever grow and an applied migration is
never edited, except to do the same work faster (a store that applied it does not run it again,
one that had not gets the same result).  Version ranges are allotted per stage so that stages
can be developed side by side: 1–9 store and reports, 10–19 checks and alerts, 20–29 outbox and
uplink, 30–39 serial readings, 40–49 console.
"""
from __future__ import annotations

import time
from typing import Callable

import sqlite_utils
import structlog

log = structlog.get_logger("agent.store")

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "reports", """
    CREATE TABLE receipts (
        id INTEGER PRIMARY KEY,
        received_at TEXT NOT NULL,
        origin TEXT NOT NULL,            -- 'dicom' | 'import'
        calling_ae TEXT, called_ae TEXT, peer TEXT,
        sop_instance_uid TEXT, sop_class_uid TEXT, transfer_syntax TEXT,
        path TEXT NOT NULL, sha256 TEXT NOT NULL, size_bytes INTEGER NOT NULL,
        status TEXT NOT NULL,            -- stored | duplicate | rejected | error
        reason TEXT
    );
    CREATE INDEX receipts_status ON receipts(status);
    CREATE INDEX receipts_sop ON receipts(sop_instance_uid);

    CREATE TABLE reports (
        sop_instance_uid TEXT PRIMARY KEY,
        receipt_id INTEGER NOT NULL REFERENCES receipts(id),
        received_at TEXT NOT NULL,
        station TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        study_instance_uid TEXT, series_instance_uid TEXT,
        kind TEXT NOT NULL, modality TEXT, source TEXT NOT NULL,
        manufacturer TEXT, model TEXT, station_name TEXT,
        study_datetime TEXT, study_description TEXT, accession_number TEXT, procedure_reported TEXT,
        patient_id TEXT, patient_name TEXT, patient_birth_date TEXT,   -- PHI: never logged, never sent unless configured
        age_years REAL, sex TEXT, weight_kg REAL,
        event_count INTEGER NOT NULL,
        superseded_by TEXT,              -- sop_instance_uid of a later cumulative report containing all our events
        record TEXT NOT NULL             -- the extract contract JSON (no PHI)
    );
    CREATE INDEX reports_study ON reports(study_instance_uid);
    CREATE INDEX reports_received ON reports(received_at);

    CREATE TABLE events (
        irradiation_event_uid TEXT PRIMARY KEY,
        sop_instance_uid TEXT NOT NULL REFERENCES reports(sop_instance_uid),  -- the latest report carrying it
        study_instance_uid TEXT,
        first_seen_at TEXT NOT NULL,
        event_type TEXT, datetime_started TEXT, protocol TEXT, target_region TEXT,
        ctdivol_mGy REAL, dlp_mGycm REAL, ssde_mGy REAL, dap_Gym2 REAL, dose_rp_Gy REAL, agd_mGy REAL,
        record TEXT NOT NULL
    );
    CREATE INDEX events_study ON events(study_instance_uid);

    CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY,         -- per-station, strictly increasing, never reused
        event_id TEXT NOT NULL UNIQUE,   -- deterministic from the data's identity
        kind TEXT NOT NULL,              -- report | alert | ack | reading | status
        created_at TEXT NOT NULL,
        body TEXT NOT NULL,              -- JSON, already stripped of PHI
        state TEXT NOT NULL DEFAULT 'pending',   -- pending | inflight | delivered | dead
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        delivered_at TEXT
    );
    CREATE INDEX outbox_state ON outbox(state, seq);

    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO counters (name, value) VALUES ('outbox_seq', 0);
    """),
    (2, "receipts_by_content", """
    -- at start-up the inbox's leftover rows are matched against receipts by content and time
    CREATE INDEX receipts_sha256 ON receipts(sha256);
    """),
    (3, "reports_other_patient_ids", """
    -- PHI like patient_id: the patient's Other Patient IDs (backslash-separated, as in DICOM), looked for in the
    -- free text that the console, `studies` and acknowledgements show or send: never logged, never sent
    ALTER TABLE reports ADD COLUMN patient_other_ids TEXT;
    """),
    (10, "alerts", """
    CREATE TABLE alerts (
        id TEXT PRIMARY KEY,             -- deterministic from rule + subject: raising twice is a no-op
        kind TEXT NOT NULL, severity TEXT NOT NULL, station TEXT,
        rule TEXT NOT NULL, source TEXT NOT NULL, message TEXT NOT NULL, raised_at TEXT NOT NULL,
        quantity TEXT, value TEXT, threshold TEXT, unit TEXT,   -- exact decimal text, in unit
        study_instance_uid TEXT, irradiation_event_uid TEXT, procedure_id TEXT,
        exam TEXT, patient_group TEXT, scope TEXT, level TEXT,
        wearer_id TEXT, body_part TEXT, period TEXT,             -- staff dosimetry
        acknowledged_by TEXT, ack_reason TEXT, ack_note TEXT, acknowledged_at TEXT
    );
    CREATE INDEX alerts_raised ON alerts(raised_at);
    CREATE INDEX alerts_study ON alerts(study_instance_uid);
    CREATE INDEX alerts_open ON alerts(acknowledged_at, raised_at);
    """),
    (11, "check_samples", """
    CREATE TABLE check_samples (
        station TEXT NOT NULL,
        quantity TEXT NOT NULL,
        scope TEXT NOT NULL,             -- per_event | per_examination
        subject TEXT NOT NULL,           -- irradiation event UID or study instance UID
        exam TEXT NOT NULL,              -- exam category when checked ('unmatched' if none)
        value TEXT NOT NULL,             -- canonical unit, exact decimal text
        age_years REAL, weight_kg REAL,
        recorded_at TEXT NOT NULL,
        PRIMARY KEY (station, quantity, scope, subject)
    );
    CREATE INDEX check_samples_window ON check_samples(station, exam, quantity, scope);

    CREATE TABLE median_state (
        rule TEXT NOT NULL, station TEXT NOT NULL,
        above INTEGER NOT NULL,          -- 1 while the rolling median is at or above the DRL
        episode INTEGER NOT NULL,        -- how many times it went above: one alert per episode
        PRIMARY KEY (rule, station)
    );
    """),
    (12, "check_samples_phantom", """
    ALTER TABLE check_samples ADD COLUMN phantom TEXT;   -- CTDI phantom of the value: head, body, or NULL (not stated)
    """),
    (13, "check_samples_phantom_backfill", """
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
    -- each sample looks up its event or its study's events: without these, every lookup read the whole table
    CREATE INDEX event_phantom_uid ON event_phantom (uid);
    CREATE INDEX event_phantom_study ON event_phantom (study);
    UPDATE check_samples SET phantom = (SELECT phantom FROM event_phantom WHERE uid = check_samples.subject)
        WHERE scope = 'per_event' AND phantom IS NULL;
    UPDATE check_samples SET phantom = (SELECT MIN(phantom) FROM event_phantom WHERE study = check_samples.subject
                                        AND NOT localizer)
        WHERE scope = 'per_examination' AND phantom IS NULL
          AND 1 = (SELECT COUNT(DISTINCT coalesce(phantom, '-')) FROM event_phantom
                   WHERE study = check_samples.subject AND NOT localizer)
          AND (SELECT MIN(phantom) FROM event_phantom WHERE study = check_samples.subject AND NOT localizer) IS NOT NULL;
    DROP TABLE event_phantom;
    """),
    (14, "check_samples_performed_at", """
    -- when the examination was performed (the study date and time the report states): the rolling median's
    -- window is the last N examinations by that time, so that backfilled older reports do not displace recent ones
    ALTER TABLE check_samples ADD COLUMN performed_at TEXT;
    UPDATE check_samples SET performed_at = (SELECT MAX(study_datetime) FROM reports
                                             WHERE reports.study_instance_uid = check_samples.subject)
        WHERE scope = 'per_examination';
    UPDATE check_samples SET performed_at = (SELECT MAX(r.study_datetime) FROM events e
                                             JOIN reports r ON r.study_instance_uid = e.study_instance_uid
                                             WHERE e.irradiation_event_uid = check_samples.subject)
        WHERE scope = 'per_event';
    """),
    (15, "check_samples_window_index", """
    -- the rolling median reads the newest N samples of one exam and quantity by when they were performed:
    -- with migration 11's index (without the time) every check sorted all of them: 10 ms at 20,000 samples
    DROP INDEX check_samples_window;
    CREATE INDEX check_samples_window ON check_samples (station, exam, quantity, scope,
                                                        coalesce(performed_at, recorded_at));
    """),
    (16, "check_samples_without_event_uids", """
    -- a report that names no Irradiation Event UID (a CT dose screen, an image's header) keeps its per-series samples
    -- under SOP#n (n: the event's place in the report's record), not under an event: migrations 13 and 14 left them
    -- without their phantom and without when the examination was performed: these come from the report itself
    UPDATE check_samples SET performed_at = (SELECT MAX(s.study_datetime) FROM reports r
                                             JOIN reports s ON s.study_instance_uid = r.study_instance_uid
                                             WHERE r.sop_instance_uid = substr(check_samples.subject, 1,
                                                                               instr(check_samples.subject, '#') - 1))
        WHERE scope = 'per_event' AND performed_at IS NULL AND instr(subject, '#') > 0;
    UPDATE check_samples SET phantom = (
            SELECT CASE WHEN coalesce(json_extract(r.record, p.path), '') = '' THEN NULL
                        WHEN lower(json_extract(r.record, p.path)) LIKE '%head%'
                             OR json_extract(r.record, p.path) LIKE '%16%' THEN 'head'
                        ELSE 'body' END
            FROM reports r, (SELECT '$.events[' || substr(check_samples.subject, instr(check_samples.subject, '#') + 1)
                                    || '].phantom' AS path) p
            WHERE r.sop_instance_uid = substr(check_samples.subject, 1, instr(check_samples.subject, '#') - 1))
        WHERE scope = 'per_event' AND phantom IS NULL AND instr(subject, '#') > 0;
    """),
    (20, "uplink_retention", """
    CREATE TABLE spool_pruned (          -- spooled files deleted after their report was delivered
        receipt_id INTEGER PRIMARY KEY REFERENCES receipts(id),
        pruned_at TEXT NOT NULL,
        size_bytes INTEGER NOT NULL
    );
    """),
    (21, "store_identity", """
    CREATE TABLE store_identity (        -- one row: this store's id, sent with every message as "store"
        id TEXT NOT NULL                 -- a new store (a reinstalled station) numbers its seq from 1 again
    );
    INSERT INTO store_identity (id) VALUES (lower(hex(randomblob(16))));
    """),
    (30, "serial_readings", """
    CREATE TABLE serial_devices (
        device TEXT PRIMARY KEY,         -- configured device id (wearer/location/port name)
        driver TEXT NOT NULL, port TEXT NOT NULL, role TEXT NOT NULL,
        procedure_id INTEGER,            -- open procedure of a DAP meter
        state TEXT NOT NULL DEFAULT '{}', -- JSON: last cumulative value and last rate per quantity
        updated_at TEXT NOT NULL
    );

    CREATE TABLE serial_samples (        -- raw samples, local only, pruned after serial_retention_days
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL,
        t REAL NOT NULL,                 -- host clock, UNIX seconds, when the frame completed
        quantity TEXT NOT NULL, kind TEXT NOT NULL,
        value REAL NOT NULL, unit TEXT NOT NULL,
        native TEXT, status TEXT NOT NULL,
        credited REAL,                   -- dose/counts credited by this sample (canonical unit)
        procedure_id INTEGER,
        raw BLOB
    );
    CREATE INDEX serial_samples_t ON serial_samples(t);
    CREATE INDEX serial_samples_device ON serial_samples(device, quantity, t);

    CREATE TABLE serial_procedures (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uid TEXT UNIQUE,                 -- station:device:id, the procedure_id of fluoro alerts
        station TEXT NOT NULL, device TEXT NOT NULL,
        start_t REAL NOT NULL, start_reason TEXT NOT NULL,   -- meter_reset | new_patient | first_seen
        end_t REAL, end_reason TEXT,
        first_dose_t REAL, last_dose_t REAL,
        dap_Gym2 REAL NOT NULL DEFAULT 0, air_kerma_Gy REAL NOT NULL DEFAULT 0,
        dap_base REAL NOT NULL DEFAULT 0, air_kerma_base REAL NOT NULL DEFAULT 0,  -- meter values at start
        samples INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX serial_procedures_time ON serial_procedures(station, start_t);

    CREATE TABLE serial_minutes (        -- per-minute aggregates, sent to the central site
        device TEXT NOT NULL, quantity TEXT NOT NULL, kind TEXT NOT NULL, unit TEXT NOT NULL,
        minute TEXT NOT NULL,            -- UTC, YYYY-MM-DDTHH:MMZ
        n INTEGER NOT NULL, min REAL NOT NULL, max REAL NOT NULL, sum REAL NOT NULL, last REAL NOT NULL,
        credited REAL NOT NULL DEFAULT 0,
        enqueued INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device, quantity, kind, minute)
    );
    CREATE INDEX serial_minutes_pending ON serial_minutes(enqueued, minute);

    CREATE TABLE staff_dose (            -- per wearer (or room location), body part and calendar quarter
        subject TEXT NOT NULL, subject_kind TEXT NOT NULL,   -- wearer | location
        body_part TEXT NOT NULL,
        quarter TEXT NOT NULL,           -- e.g. 2026Q4, in the station's local time
        dose_Sv REAL NOT NULL DEFAULT 0,
        derived_Sv REAL NOT NULL DEFAULT 0,  -- part integrated from a dose rate by the agent
        samples INTEGER NOT NULL DEFAULT 0,
        first_t REAL, last_t REAL,
        devices TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (subject, subject_kind, body_part, quarter)
    );

    CREATE TABLE serial_reconciliations (  -- DAP meter total vs the modality's RDSR total
        id INTEGER PRIMARY KEY,
        procedure_id INTEGER NOT NULL REFERENCES serial_procedures(id),
        sop_instance_uid TEXT NOT NULL, study_instance_uid TEXT,
        meter_dap_Gym2 REAL NOT NULL, rdsr_dap_Gym2 REAL NOT NULL,
        difference_rel REAL NOT NULL,    -- (meter - rdsr) / rdsr
        tolerance_rel REAL NOT NULL,
        finding INTEGER NOT NULL,        -- 1: a QA finding (difference above tolerance)
        recorded_at TEXT NOT NULL,
        UNIQUE (procedure_id, sop_instance_uid)
    );
    """),
]


class NewerStore(Exception):
    """The store holds migrations this version does not know: a newer version wrote it."""


def apply(db: sqlite_utils.Database, step: Callable[[str], None] | None = None) -> list[int]:
    """Apply every migration not yet recorded in ``schema_migrations``; returns the versions applied.
    ``step`` hears what is being done as each migration begins (systemd's STATUS while the agent starts)."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
    done = {row[0] for row in db.execute("SELECT version FROM schema_migrations").fetchall()}
    newer = sorted(done - {version for version, _, _ in MIGRATIONS})
    if newer:  # a rollback to an older version: it would write what the newer one misreads
        raise NewerStore(f"the store was written by a newer alara-edge (migrations {newer} are unknown to this "
                         "version): run that version, or restore the store's backup taken before the upgrade")
    pending = [migration for migration in sorted(MIGRATIONS) if migration[0] not in done]
    applied = []
    for n, (version, name, sql) in enumerate(pending, 1):
        log.info("migration_started", version=version, name=name, n=n, of=len(pending))
        if step is not None:
            step(f"upgrading the store: migration {version} {name} ({n} of {len(pending)} to apply)")
        began = time.monotonic()
        with db.atomic():
            for statement in _statements(sql):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                [version, name, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())],
            )
        applied.append(version)
        log.info("migration_applied", version=version, name=name, duration_s=round(time.monotonic() - began, 3))
    return applied


def _statements(sql: str) -> list[str]:
    """Split a migration script on ';' (migrations contain no triggers or string literals with ';')."""
    out = []
    for chunk in sql.split(";"):
        lines = [line.split("--", 1)[0] for line in chunk.splitlines()]
        stmt = "\n".join(lines).strip()
        if stmt:
            out.append(stmt)
    return out
