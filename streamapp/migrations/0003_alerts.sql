-- 0003_alerts: the alerts table (one row per alert id, stored once) and its webhook
-- delivery state (an outbox: the delivery loop of every worker claims due rows).
--
-- Applied by streamapp.db.migrate() inside one transaction, with search_path set to
-- the configured schema (POSTGRES_SCHEMA), so no name here is schema-qualified.

CREATE TABLE alerts (
    id               text             PRIMARY KEY CHECK (id = rule || ':' || subject),
    rule             text             NOT NULL
                     CHECK (rule IN ('magnitude', 'tsunami', 'pager', 'surge')),
    subject          text             NOT NULL,
    region           text             NOT NULL CHECK (region ~ '^[0-9]{2}[NS][0-9]{3}[EW]$'),
    event_id         text             NULL,
    magnitude        double precision NULL,
    place            text             NULL,
    url              text             NULL,
    tsunami          boolean          NULL,
    pager            text             NULL,
    hour_count       integer          NULL CHECK (hour_count IS NULL OR hour_count >= 0),
    trailing_mean    double precision NULL,
    factor           double precision NULL,
    summary          text             NOT NULL,
    occurred_at      timestamptz      NOT NULL,
    detected_at      timestamptz      NOT NULL,
    stored_at        timestamptz      NOT NULL DEFAULT now(),
    delivery_status  text             NOT NULL DEFAULT 'off'
                     CHECK (delivery_status IN ('off', 'pending', 'delivered', 'failing')),
    attempts         integer          NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       text             NULL,
    next_attempt_at  timestamptz      NULL,
    delivered_at     timestamptz      NULL,
    leased_until     timestamptz      NULL
);

-- The API's order (newest detected first, id breaking ties) and its filters.
CREATE INDEX alerts_detected_idx ON alerts (detected_at DESC, id DESC);
CREATE INDEX alerts_rule_detected_idx ON alerts (rule, detected_at DESC, id DESC);
CREATE INDEX alerts_region_detected_idx ON alerts (region, detected_at DESC, id DESC);
-- The outbox scan: undelivered alerts by when they are due.
CREATE INDEX alerts_outbox_idx ON alerts (next_attempt_at)
    WHERE delivery_status IN ('pending', 'failing');

COMMENT ON TABLE alerts IS
    'Alerts of the rules (models.alerts), one row per id = rule:subject: the first '
    'detection is kept (INSERT ... ON CONFLICT (id) DO NOTHING), so a revised event '
    'does not alert twice. Also the outbox of the webhook delivery.';
COMMENT ON COLUMN alerts.id IS 'rule:subject, e.g. magnitude:us7000abcd.';
COMMENT ON COLUMN alerts.rule IS 'magnitude, tsunami, pager or surge.';
COMMENT ON COLUMN alerts.subject IS
    'The event id (event rules) or region:hour_start (surge).';
COMMENT ON COLUMN alerts.region IS
    'Region cell (10 x 10 degrees) named by its south-west corner, e.g. 30N130E.';
COMMENT ON COLUMN alerts.event_id IS 'The event (event rules); NULL for surges.';
COMMENT ON COLUMN alerts.magnitude IS 'The event''s magnitude when it alerted.';
COMMENT ON COLUMN alerts.place IS 'The event''s place text when it alerted.';
COMMENT ON COLUMN alerts.url IS 'The event''s USGS page.';
COMMENT ON COLUMN alerts.tsunami IS 'The event''s USGS tsunami flag.';
COMMENT ON COLUMN alerts.pager IS 'The event''s PAGER alert level (green..red).';
COMMENT ON COLUMN alerts.hour_count IS 'Surge: events in the region in the hour.';
COMMENT ON COLUMN alerts.trailing_mean IS
    'Surge: the region''s trailing 24-hour hourly mean.';
COMMENT ON COLUMN alerts.factor IS 'Surge: ALERT_SURGE_FACTOR when it fired.';
COMMENT ON COLUMN alerts.summary IS 'One line for a person.';
COMMENT ON COLUMN alerts.occurred_at IS
    'The event''s origin time, or the surging hour''s start (UTC).';
COMMENT ON COLUMN alerts.detected_at IS 'When the rule fired (the worker''s clock).';
COMMENT ON COLUMN alerts.stored_at IS 'When the row was inserted.';
COMMENT ON COLUMN alerts.delivery_status IS
    'Webhook delivery: off (no ALERT_WEBHOOK_URL when stored), pending (not tried '
    'yet), delivered (a 2xx answer), failing (a round failed; tried again at '
    'next_attempt_at, never dropped).';
COMMENT ON COLUMN alerts.attempts IS 'HTTP requests made to deliver it, all rounds.';
COMMENT ON COLUMN alerts.last_error IS
    'Why the last attempt failed, one line, without the URL''s credentials.';
COMMENT ON COLUMN alerts.next_attempt_at IS
    'When the next delivery round may start (NULL: off or delivered).';
COMMENT ON COLUMN alerts.delivered_at IS 'When the webhook answered 2xx.';
COMMENT ON COLUMN alerts.leased_until IS
    'Internal: a worker is delivering it until then (a crashed worker''s claim '
    'expires; another worker takes it over).';
