-- 0001_initial: the earthquakes table (one row per USGS event, latest revision wins)
-- and the dead_letters table (every message the pipeline could not store as an event).
--
-- Applied by streamapp.db.migrate() inside one transaction, with search_path set to
-- the configured schema (POSTGRES_SCHEMA), so no name here is schema-qualified.

CREATE TABLE earthquakes (
    id              text             PRIMARY KEY CHECK (id <> ''),
    time            timestamptz      NOT NULL,
    updated         timestamptz      NOT NULL,
    magnitude       double precision NULL CHECK (magnitude BETWEEN -2 AND 10),
    mag_type        text             NULL,
    place           text             NULL,
    longitude       double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    latitude        double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    depth           double precision NOT NULL CHECK (depth BETWEEN -10 AND 1000),
    status          text             NULL,
    event_type      text             NULL,
    tsunami         boolean          NULL,
    significance    integer          NULL,
    url             text             NULL,
    felt            integer          NULL,
    cdi             double precision NULL,
    mmi             double precision NULL,
    alert           text             NULL,
    net             text             NULL,
    code            text             NULL,
    title           text             NULL,
    fetched_at      timestamptz      NULL,
    source_url      text             NULL,
    raw_partition   integer          NULL,
    raw_offset      bigint           NULL,
    kafka_partition integer          NOT NULL CHECK (kafka_partition >= 0),
    kafka_offset    bigint           NOT NULL CHECK (kafka_offset >= 0),
    ingested_at     timestamptz      NOT NULL DEFAULT now()
);

CREATE INDEX earthquakes_time_idx ON earthquakes (time DESC);
CREATE INDEX earthquakes_magnitude_idx ON earthquakes (magnitude);

COMMENT ON TABLE earthquakes IS
    'One row per earthquake event (USGS feature id); a revision with a larger '
    '"updated" replaces the row, an older or equal one is ignored.';
COMMENT ON COLUMN earthquakes.id IS
    'USGS event id (feature "id"), e.g. ak0144m5b4r6; the upsert key.';
COMMENT ON COLUMN earthquakes.time IS
    'Origin time of the event (properties.time, epoch ms), UTC.';
COMMENT ON COLUMN earthquakes.updated IS
    'When USGS last revised the event (properties.updated, epoch ms), UTC; '
    'decides which revision is kept.';
COMMENT ON COLUMN earthquakes.magnitude IS
    'Magnitude (properties.mag), -2..10; NULL when the feed has none.';
COMMENT ON COLUMN earthquakes.mag_type IS
    'Magnitude type (properties.magType), e.g. ml, md, mb, mww.';
COMMENT ON COLUMN earthquakes.place IS
    'Human-readable location (properties.place), e.g. "10km NE of Town, Region".';
COMMENT ON COLUMN earthquakes.longitude IS
    'Epicentre longitude in degrees (geometry.coordinates[0]), -180..180.';
COMMENT ON COLUMN earthquakes.latitude IS
    'Epicentre latitude in degrees (geometry.coordinates[1]), -90..90.';
COMMENT ON COLUMN earthquakes.depth IS
    'Hypocentre depth in km (geometry.coordinates[2]), -10..1000.';
COMMENT ON COLUMN earthquakes.status IS
    'Review status (properties.status), lower case: automatic, reviewed, deleted.';
COMMENT ON COLUMN earthquakes.event_type IS
    'Event type (properties.type), e.g. earthquake, quarry blast, explosion.';
COMMENT ON COLUMN earthquakes.tsunami IS
    'Tsunami flag (properties.tsunami 0/1): true when a tsunami advisory may exist.';
COMMENT ON COLUMN earthquakes.significance IS
    'USGS significance score (properties.sig), 0..~3000.';
COMMENT ON COLUMN earthquakes.url IS
    'USGS event page (properties.url).';
COMMENT ON COLUMN earthquakes.felt IS
    'Number of "Did You Feel It?" reports (properties.felt).';
COMMENT ON COLUMN earthquakes.cdi IS
    'Maximum reported community intensity (properties.cdi).';
COMMENT ON COLUMN earthquakes.mmi IS
    'Maximum estimated instrumental intensity (properties.mmi).';
COMMENT ON COLUMN earthquakes.alert IS
    'PAGER alert level (properties.alert): green, yellow, orange, red.';
COMMENT ON COLUMN earthquakes.net IS
    'Contributing network (properties.net), e.g. us, ak, ci.';
COMMENT ON COLUMN earthquakes.code IS
    'Event code within the network (properties.code).';
COMMENT ON COLUMN earthquakes.title IS
    'Feed title (properties.title), e.g. "M 1.6 - 10km NE of Town".';
COMMENT ON COLUMN earthquakes.fetched_at IS
    'When the platform fetched the feature from the source, UTC.';
COMMENT ON COLUMN earthquakes.source_url IS
    'The feed URL (or replay file) the feature was fetched from.';
COMMENT ON COLUMN earthquakes.raw_partition IS
    'Lineage: partition of the raw-topic message this row was validated from.';
COMMENT ON COLUMN earthquakes.raw_offset IS
    'Lineage: offset of the raw-topic message this row was validated from.';
COMMENT ON COLUMN earthquakes.kafka_partition IS
    'Lineage: partition of the clean-topic message that wrote this revision.';
COMMENT ON COLUMN earthquakes.kafka_offset IS
    'Lineage: offset of the clean-topic message that wrote this revision.';
COMMENT ON COLUMN earthquakes.ingested_at IS
    'When this revision was written to PostgreSQL (transaction time).';

CREATE TABLE dead_letters (
    id               bigserial   PRIMARY KEY,
    source_topic     text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    key              bytea       NULL,
    payload          bytea       NOT NULL,
    error_kind       text        NOT NULL,
    error_message    text        NULL,
    error_detail     jsonb       NULL,
    failed_at        timestamptz NULL,
    stored_at        timestamptz NOT NULL DEFAULT now(),
    redriven_at      timestamptz NULL,
    CONSTRAINT dead_letters_source_key
        UNIQUE (source_topic, source_partition, source_offset)
);

CREATE INDEX dead_letters_kind_failed_idx ON dead_letters (error_kind, failed_at);

COMMENT ON TABLE dead_letters IS
    'Every message the pipeline could not store as an event, with its original '
    'bytes and the reason; one row per source message (replays are ignored).';
COMMENT ON COLUMN dead_letters.id IS
    'Surrogate key, in order of storage.';
COMMENT ON COLUMN dead_letters.source_topic IS
    'Kafka topic of the rejected message (the raw topic, or the clean topic for '
    'rows the database refused).';
COMMENT ON COLUMN dead_letters.source_partition IS
    'Kafka partition of the rejected message.';
COMMENT ON COLUMN dead_letters.source_offset IS
    'Kafka offset of the rejected message; with topic and partition it identifies '
    'the message, so a replayed dead letter is stored once.';
COMMENT ON COLUMN dead_letters.key IS
    'The message key exactly as received (NULL when it had none).';
COMMENT ON COLUMN dead_letters.payload IS
    'The message value exactly as received, byte for byte (may be empty).';
COMMENT ON COLUMN dead_letters.error_kind IS
    'Why it was rejected: empty, too_large, not_utf8, not_json, too_deep, '
    'not_object, schema (validation) or sink_rejected (refused by the database).';
COMMENT ON COLUMN dead_letters.error_message IS
    'One-line human-readable reason.';
COMMENT ON COLUMN dead_letters.error_detail IS
    'Machine-readable detail, e.g. per-field validation messages or the SQLSTATE.';
COMMENT ON COLUMN dead_letters.failed_at IS
    'When the message was rejected, UTC.';
COMMENT ON COLUMN dead_letters.stored_at IS
    'When the dead letter was written to PostgreSQL.';
COMMENT ON COLUMN dead_letters.redriven_at IS
    'When the payload was sent back for reprocessing (NULL: never).';
