-- 0002_activity: the activity table (one row per region cell and tumbling window:
-- the 1-hour and 1-day windows of the activity agent, upserted as they change).
--
-- Applied by streamapp.db.migrate() inside one transaction, with search_path set to
-- the configured schema (POSTGRES_SCHEMA), so no name here is schema-qualified.

CREATE TABLE activity (
    region         text             NOT NULL CHECK (region ~ '^[0-9]{2}[NS][0-9]{3}[EW]$'),
    "window"       text             NOT NULL CHECK ("window" IN ('1h', '1d')),
    window_start   timestamptz      NOT NULL,
    window_end     timestamptz      NOT NULL CHECK (window_end > window_start),
    count          integer          NOT NULL CHECK (count >= 0),
    max_magnitude  double precision NULL,
    energy_joules  double precision NOT NULL DEFAULT 0 CHECK (energy_joules >= 0),
    min_depth_km   double precision NULL,
    max_depth_km   double precision NULL,
    contributions  jsonb            NOT NULL DEFAULT '{}'::jsonb,
    updated_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (region, "window", window_start)
);

CREATE INDEX activity_window_start_idx ON activity ("window", window_start DESC);
CREATE INDEX activity_window_count_idx ON activity ("window", count DESC);

COMMENT ON TABLE activity IS
    'Seismic activity per region cell (10 x 10 degrees) and tumbling UTC window '
    '(1 hour, 1 day); each event counted once (by id, its newest revision).';
COMMENT ON COLUMN activity.region IS
    'Region cell named by its south-west corner, e.g. 30N130E (models.regions).';
COMMENT ON COLUMN activity."window" IS
    'Window length: 1h (hour starts) or 1d (day starts, UTC).';
COMMENT ON COLUMN activity.window_start IS
    'Start of the window (inclusive), UTC; events fall in by their origin time.';
COMMENT ON COLUMN activity.window_end IS
    'End of the window (exclusive), UTC.';
COMMENT ON COLUMN activity.count IS
    'Distinct events (by id) in the region and window.';
COMMENT ON COLUMN activity.max_magnitude IS
    'Largest magnitude of those events; NULL when none has a magnitude.';
COMMENT ON COLUMN activity.energy_joules IS
    'Summed radiated seismic energy, log10 E = 1.5 M + 4.8 (J) per event.';
COMMENT ON COLUMN activity.min_depth_km IS
    'Shallowest hypocentre depth (km) of the events.';
COMMENT ON COLUMN activity.max_depth_km IS
    'Deepest hypocentre depth (km) of the events.';
COMMENT ON COLUMN activity.contributions IS
    'Internal: each event''s contribution by id, {"id": [time_ms, magnitude, '
    'depth_km]}, so a late event or a revision recomputes the window exactly.';
COMMENT ON COLUMN activity.updated_at IS
    'When the row was last written (transaction time).';
