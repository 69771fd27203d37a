-- 0004_backfill: progress of the backfills from the USGS FDSN event service
-- (`faust -A streamapp backfill`), one row per distinct set of parameters.
--
-- Applied by streamapp.db.migrate() inside one transaction, with search_path set to
-- the configured schema (POSTGRES_SCHEMA), so no name here is schema-qualified.

CREATE TABLE backfill_runs (
    id              bigserial        PRIMARY KEY,
    params_key      text             NOT NULL UNIQUE,
    since           timestamptz      NOT NULL,
    until           timestamptz      NOT NULL CHECK (until > since),
    min_magnitude   double precision NULL,
    bbox            double precision[] NULL CHECK (bbox IS NULL OR cardinality(bbox) = 4),
    source_url      text             NOT NULL,
    done_until      timestamptz      NOT NULL,
    slices_done     integer          NOT NULL DEFAULT 0 CHECK (slices_done >= 0),
    events_expected bigint           NULL,
    events_fetched  bigint           NOT NULL DEFAULT 0,
    events_produced bigint           NOT NULL DEFAULT 0,
    events_skipped  bigint           NOT NULL DEFAULT 0,
    started_at      timestamptz      NOT NULL DEFAULT now(),
    updated_at      timestamptz      NOT NULL DEFAULT now(),
    finished_at     timestamptz      NULL,
    last_error      text             NULL,
    CHECK (done_until BETWEEN since AND until)
);

CREATE INDEX backfill_runs_updated_idx ON backfill_runs (updated_at DESC);

COMMENT ON TABLE backfill_runs IS
    'Progress of each backfill (one row per since/until/min magnitude/bbox): the '
    'time range is done up to done_until, slice by slice in time order; a slice '
    'counts only once Kafka acknowledged every event of it.';
COMMENT ON COLUMN backfill_runs.params_key IS
    'The parameters as canonical text, e.g. '
    '"since=2024-01-01T00:00:00+00:00 until=... minmag=4.5 bbox=-"; the resume key.';
COMMENT ON COLUMN backfill_runs.done_until IS
    'End (exclusive) of the last finished slice: a resumed run starts here.';
COMMENT ON COLUMN backfill_runs.events_expected IS
    'Events the service counted in the range at the start of the run (NULL: unknown).';
COMMENT ON COLUMN backfill_runs.events_fetched IS
    'Features received in the finished slices.';
COMMENT ON COLUMN backfill_runs.events_produced IS
    'Features of the finished slices produced to the raw topic (acknowledged).';
COMMENT ON COLUMN backfill_runs.events_skipped IS
    'Features not produced because the live fetcher already sent them at the same '
    '"updated" (its dedup table).';
COMMENT ON COLUMN backfill_runs.finished_at IS
    'When the whole range was done (NULL: running or interrupted).';
COMMENT ON COLUMN backfill_runs.last_error IS
    'The error that stopped the last attempt (NULL after a slice succeeds).';
