"""Replay a Kafka topic into a pandas DataFrame without joining a consumer group."""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import importlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

from models.records import QUAKE_FIELDS
from streamapp.exceptions import StreamappError
from streamapp.settings import Settings

__all__ = [
    "CLEAN_COLUMNS",
    "DEAD_LETTER_COLUMNS",
    "KINDS",
    "META_COLUMNS",
    "RAW_COLUMNS",
    "TABLES",
    "RecordLike",
    "ReplayKind",
    "TopicNotFound",
    "check_output",
    "decode_record",
    "read_table",
    "records_to_frame",
    "replay",
    "replay_topic",
    "resolve_kind",
    "to_millis",
    "write_frame",
]

log = logging.getLogger(__name__)

ReplayKind = Literal["auto", "raw", "clean", "dead-letter"]
#: The decoders ``kind`` can name; ``auto`` picks one from the topic name or content.
KINDS: tuple[str, ...] = ("auto", "raw", "clean", "dead-letter")
#: The tables :func:`read_table` may read.
TABLES: tuple[str, ...] = ("earthquakes", "dead_letters")

#: Seconds a replay waits for the broker to hand over messages before giving up.
DEFAULT_TIMEOUT = 30.0
#: How long one fetch waits for data (ms).
FETCH_WAIT_MS = 500
#: Characters of a payload kept in the human-readable preview columns.
PREVIEW_CHARS = 200

#: Kafka metadata columns every replayed frame starts with.
META_COLUMNS: tuple[str, ...] = ("partition", "offset", "timestamp", "key")
#: USGS feature properties in feed order; unknown properties are appended after them.
RAW_PROPERTIES: tuple[str, ...] = (
    "mag",
    "place",
    "time",
    "updated",
    "tz",
    "url",
    "detail",
    "felt",
    "cdi",
    "mmi",
    "alert",
    "status",
    "tsunami",
    "sig",
    "net",
    "code",
    "ids",
    "sources",
    "types",
    "nst",
    "dmin",
    "rms",
    "gap",
    "magType",
    "type",
    "title",
)
RAW_COLUMNS: tuple[str, ...] = (
    *META_COLUMNS,
    "id",
    *RAW_PROPERTIES,
    "lon",
    "lat",
    "depth",
    "fetched_at",
    "source_url",
    "decode_error",
    "value_preview",
)
_RAW_NUMERIC = (
    "mag",
    "tz",
    "felt",
    "cdi",
    "mmi",
    "tsunami",
    "sig",
    "nst",
    "dmin",
    "rms",
    "gap",
    "lon",
    "lat",
    "depth",
)
_RAW_RESERVED = frozenset(
    (*META_COLUMNS, "id", "lon", "lat", "depth", "fetched_at", "source_url")
) | {"decode_error", "value_preview"}
DEAD_LETTER_COLUMNS: tuple[str, ...] = (
    *META_COLUMNS,
    "error_kind",
    "error_message",
    "error_detail",
    "source_topic",
    "source_partition",
    "source_offset",
    "source_key",
    "payload",
    "payload_size",
    "payload_text",
    "decode_error",
)
#: ``models.records.Quake`` fields in declaration order (also the table's columns).
CLEAN_COLUMNS: tuple[str, ...] = (*META_COLUMNS, *QUAKE_FIELDS)
_CLEAN_NUMERIC = (
    "longitude",
    "latitude",
    "depth",
    "magnitude",
    "cdi",
    "mmi",
)
_CLEAN_INTEGER = ("significance", "felt", "raw_partition", "raw_offset")
#: Keys of Faust's own record metadata, not data.
_FAUST_META = "__faust"
#: Column names holding epoch milliseconds in the USGS feed.
_EPOCH_MS_COLUMNS = frozenset(("time", "updated"))


class TopicNotFound(StreamappError):
    """The topic to replay does not exist on the broker."""


class RecordLike(Protocol):
    """What the decoders read from a message (aiokafka's ``ConsumerRecord`` fits)."""

    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


# --------------------------------------------------------------------- decoding


def resolve_kind(settings: Settings, topic: str, kind: str = "auto") -> str:
    """The decoder for ``topic``: ``kind`` itself, or guessed from the topic name.

    Returns ``"auto"`` when the name says nothing; each message is then sniffed.
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    known = {
        settings.topic_raw: "raw",
        settings.topic_clean: "clean",
        settings.topic_dead_letter: "dead-letter",
    }
    if topic in known:
        return known[topic]
    name = topic.lower()
    if "dead" in name or "dlq" in name:
        return "dead-letter"
    if name.endswith("raw"):
        return "raw"
    if name.endswith("clean"):
        return "clean"
    return "auto"


def decode_record(record: RecordLike, kind: str = "auto") -> dict[str, Any]:
    """One message as a flat row (column -> value). Never raises for bad bytes.

    ``kind`` is ``raw``, ``clean``, ``dead-letter`` or ``auto`` (sniff the content).
    Messages that cannot be read get a row whose ``decode_error`` says why.
    """
    row: dict[str, Any] = {
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": _key_text(record.key),
    }
    doc, error = _load_json(record.value)
    if kind == "auto":
        kind = _sniff(doc)
    if kind == "raw":
        row.update(_decode_raw(doc, error, record.value))
    elif kind == "clean":
        row.update(_decode_clean(doc, error, record.value))
    elif kind == "dead-letter":
        row.update(_decode_dead_letter(doc, error, record))
    else:
        raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
    return row


def records_to_frame(
    records: Iterable[RecordLike],
    kind: str = "auto",
    *,
    since: Any = None,
    until: Any = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Decode ``records`` into a DataFrame, keeping ``since <= timestamp < until``.

    The same filtering and decoding :func:`replay_topic` applies to a live topic,
    usable on any ConsumerRecord-like objects (tests, files of captured messages).
    """
    since_ms, until_ms = to_millis(since), to_millis(until)
    rows: list[dict[str, Any]] = []
    for record in records:
        if limit is not None and len(rows) >= limit:
            break
        if _in_window(record.timestamp, since_ms, until_ms):
            rows.append(decode_record(record, kind))
    return _frame(rows, kind)


def to_millis(when: Any) -> int | None:
    """Epoch milliseconds of a datetime, pandas Timestamp, ISO string or number.

    Naive datetimes are taken as UTC; numbers are already epoch milliseconds.
    """
    if when is None:
        return None
    if isinstance(when, bool):
        raise TypeError(f"not a point in time: {when!r}")
    if isinstance(when, int | float):
        return int(when)
    stamp = pd.Timestamp(when)
    if stamp is pd.NaT:
        raise ValueError(f"not a point in time: {when!r}")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.timestamp() * 1000)


def _in_window(timestamp: int, since_ms: int | None, until_ms: int | None) -> bool:
    if since_ms is not None and timestamp < since_ms:
        return False
    return not (until_ms is not None and timestamp >= until_ms)


def _key_text(key: bytes | None) -> str | None:
    if key is None:
        return None
    if isinstance(key, str):
        return key
    return bytes(key).decode("utf-8", "backslashreplace")


def _preview(value: bytes | None) -> str | None:
    if value is None:
        return None
    return bytes(value[: PREVIEW_CHARS * 4]).decode("utf-8", "replace")[:PREVIEW_CHARS]


def _load_json(value: bytes | None) -> tuple[Any, str | None]:
    """``(document, None)`` or ``(None, "<kind>: <message>")``."""
    if value is None or len(value) == 0:
        return None, "empty: the message has no value"
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not_utf8: {exc}"
    try:
        return json.loads(text), None
    except (ValueError, RecursionError) as exc:
        return None, f"not_json: {exc}"


def _sniff(doc: Any) -> str:
    if isinstance(doc, dict):
        meta = doc.get(_FAUST_META)
        namespace = str(meta.get("ns", "")) if isinstance(meta, dict) else ""
        if namespace.endswith("DeadLetter"):
            return "dead-letter"
        if namespace.endswith("Quake"):
            return "clean"
        if "feature" in doc:
            return "raw"
        if "error_kind" in doc or "error" in doc:
            return "dead-letter"
        return "clean"
    return "raw"


def _scalar(value: Any) -> Any:
    """Lists and objects become JSON text so every cell stays a scalar."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


def _decode_raw(doc: Any, error: str | None, value: bytes | None) -> dict[str, Any]:
    if error is None and not isinstance(doc, dict):
        error = f"not_object: the envelope is a JSON {type(doc).__name__}"
    if error is None and not isinstance(doc.get("feature"), dict):
        error = "no_feature: the envelope has no 'feature' object"
    if error is not None:
        return {"decode_error": error, "value_preview": _preview(value)}
    feature = doc["feature"]
    row: dict[str, Any] = {"id": _scalar(feature.get("id"))}
    properties = feature.get("properties")
    if isinstance(properties, dict):
        for name, item in properties.items():
            column = f"properties.{name}" if name in _RAW_RESERVED else name
            row[column] = _scalar(item) if isinstance(item, dict | list) else item
    geometry = feature.get("geometry")
    coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if isinstance(coords, list):
        for column, item in zip(("lon", "lat", "depth"), coords, strict=False):
            row[column] = _scalar(item)
    row["fetched_at"] = _scalar(doc.get("fetched_at"))
    row["source_url"] = _scalar(doc.get("source_url"))
    return row


def _decode_clean(doc: Any, error: str | None, value: bytes | None) -> dict[str, Any]:
    if error is None and not isinstance(doc, dict):
        error = f"not_object: the record is a JSON {type(doc).__name__}"
    if error is not None:
        return {"decode_error": error, "value_preview": _preview(value)}
    row: dict[str, Any] = {}
    for name, item in doc.items():
        if name == _FAUST_META:
            continue
        column = f"record.{name}" if name in META_COLUMNS else name
        row[column] = _scalar(item)
    return row


def _decode_dead_letter(
    doc: Any, error: str | None, record: RecordLike
) -> dict[str, Any]:
    headers = {
        name: bytes(raw).decode("utf-8", "replace")
        for name, raw in (record.headers or ())
        if raw is not None
    }
    row: dict[str, Any] = {
        "error_kind": headers.get("error.kind"),
        "error_message": headers.get("error.message"),
        "source_topic": headers.get("source.topic"),
        "source_partition": headers.get("source.partition"),
        "source_offset": headers.get("source.offset"),
    }
    if error is None and not isinstance(doc, dict):
        error = f"not_object: the dead letter is a JSON {type(doc).__name__}"
    if error is not None:
        row["decode_error"] = error
        row["payload_text"] = _preview(record.value)
        return row
    err = doc.get("error") if isinstance(doc.get("error"), dict) else {}
    source = doc.get("source") if isinstance(doc.get("source"), dict) else {}
    row["error_kind"] = _first(
        doc.get("error_kind"), err.get("kind"), row["error_kind"]
    )
    row["error_message"] = _first(
        doc.get("error_message"), err.get("message"), row["error_message"]
    )
    detail = _first(doc.get("error_detail"), err.get("detail"))
    row["error_detail"] = None if detail is None else json.dumps(detail, sort_keys=True)
    for part in ("topic", "partition", "offset"):
        row[f"source_{part}"] = _first(
            doc.get(f"source_{part}"), source.get(part), row[f"source_{part}"]
        )
    payload, payload_error = _payload(doc)
    row["payload"] = payload
    row["payload_size"] = None if payload is None else len(payload)
    row["payload_text"] = _preview(payload)
    key_field = _first(doc.get("key_b64"), doc.get("source_key_b64"), doc.get("key"))
    key_bytes = _b64(key_field) if key_field is not None else None
    row["source_key"] = _key_text(key_bytes) if key_bytes is not None else key_field
    if payload_error:
        row["decode_error"] = payload_error
    handled = {
        "error",
        "error_kind",
        "error_message",
        "error_detail",
        "source",
        "source_topic",
        "source_partition",
        "source_offset",
        "key",
        "key_b64",
        "source_key_b64",
        _FAUST_META,
        *_PAYLOAD_FIELDS,
    }
    for name, item in doc.items():
        if name not in handled:
            column = f"letter.{name}" if name in row or name in META_COLUMNS else name
            row[column] = _scalar(item)
    return row


#: Where a dead letter may carry the original bytes (base64 text).
_PAYLOAD_FIELDS = ("payload_b64", "payload", "value_b64", "value")


def _payload(doc: Mapping[str, Any]) -> tuple[bytes | None, str | None]:
    for name in _PAYLOAD_FIELDS:
        if name in doc and doc[name] is not None:
            raw = doc[name]
            decoded = _b64(raw)
            if decoded is None:
                return None, f"bad_payload: {name!r} is not base64 text"
            return decoded, None
    return None, None


def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


# ----------------------------------------------------------------------- frames


def _frame(rows: list[dict[str, Any]], kind: str) -> pd.DataFrame:
    if kind == "raw":
        first: Sequence[str] = RAW_COLUMNS
    elif kind == "dead-letter":
        first = DEAD_LETTER_COLUMNS
    else:
        first = CLEAN_COLUMNS if kind == "clean" else META_COLUMNS
    known = set(first)
    extra: dict[str, None] = {}
    for row in rows:
        if not known.issuperset(row):
            for column in row:
                if column not in known:
                    extra.setdefault(column, None)
    columns = [*first, *extra]
    if kind == "raw" and "decode_error" in columns:
        # keep the error columns last, after any unexpected property
        columns = [c for c in columns if c not in ("decode_error", "value_preview")]
        columns += ["decode_error", "value_preview"]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame = frame.astype({"partition": "int64", "offset": "int64"})
    frame["timestamp"] = pd.to_datetime(
        pd.to_numeric(frame["timestamp"], errors="coerce"), unit="ms", utc=True
    )
    if kind == "raw":
        for column in _RAW_NUMERIC:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    if kind == "clean":
        for column in _CLEAN_NUMERIC:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
        for column in _CLEAN_INTEGER:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(
                "Int64"
            )
    if kind == "dead-letter":
        for column in ("source_partition", "source_offset", "payload_size"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(
                "Int64"
            )
    for column in frame.columns:
        frame[column] = _as_time(column, frame[column])
    return frame


def _as_time(column: str, series: pd.Series) -> pd.Series:
    """Time columns as UTC datetimes (epoch ms or ISO-8601); other columns unchanged."""
    epoch = column in _EPOCH_MS_COLUMNS
    if not (epoch or column.endswith("_at") or column.endswith("_time")):
        return series
    present = series.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if numbers.notna().all() and not present.map(_is_bool).any():
        return pd.to_datetime(
            pd.to_numeric(series, errors="coerce"), unit="ms", utc=True
        )
    if present.map(lambda v: isinstance(v, str)).all():
        return pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
    if epoch:  # a raw feed value of the wrong type: keep the numbers only
        return pd.to_datetime(
            pd.to_numeric(series, errors="coerce"), unit="ms", utc=True
        )
    return series


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


# ----------------------------------------------------------------------- replay


async def replay_topic(
    settings: Settings,
    topic: str,
    *,
    limit: int | None = None,
    since: Any = None,
    until: Any = None,
    kind: ReplayKind | str = "auto",
    progress: bool = False,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - an idle timeout, not a deadline
) -> pd.DataFrame:
    """Read ``topic`` from the beginning into a DataFrame, one row per message.

    No consumer group is joined and no offset is committed: every partition is
    assigned by hand and read from its beginning (or from the first offset at or
    after ``since``) up to the end offset taken when the replay starts, so a topic
    that is still being written terminates. ``until`` (exclusive) bounds the
    window, ``limit`` caps the rows. ``timeout`` is how long the broker may stay
    silent while messages remain before :class:`TimeoutError` is raised.
    ``frame.attrs["replay"]`` records the offsets read and the time it took.
    """
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    from streamapp.kafka import aiokafka_kwargs

    decoder = resolve_kind(settings, topic, kind)
    if limit is not None and limit < 0:
        raise ValueError(f"limit={limit} must not be negative")
    since_ms, until_ms = to_millis(since), to_millis(until)
    started = time.monotonic()
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=f"{settings.app_id}-replay",
        fetch_max_wait_ms=FETCH_WAIT_MS,
        request_timeout_ms=max(int(timeout * 1000), 5000),
    )
    await consumer.start()
    try:
        numbers = await _partitions(consumer, topic, timeout)
        tps = [TopicPartition(topic, p) for p in numbers]
        consumer.assign(tps)
        stop = dict(await consumer.end_offsets(tps))
        start = dict(await consumer.beginning_offsets(tps))
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                start[tp] = stop[tp] if hit is None else max(hit.offset, start[tp])
        if until_ms is not None:
            found = await consumer.offsets_for_times({tp: until_ms for tp in tps})
            for tp in tps:
                hit = found.get(tp)
                if hit is not None:
                    stop[tp] = min(stop[tp], hit.offset)
        if since_ms is None:
            await consumer.seek_to_beginning(*tps)
        else:
            for tp in tps:
                consumer.seek(tp, start[tp])
        rows, scanned = await _consume(
            consumer,
            tps,
            start,
            stop,
            decoder=decoder,
            window=(since_ms, until_ms),
            limit=limit,
            progress=progress,
            timeout=timeout,
            topic=topic,
        )
    finally:
        await consumer.stop()
    frame = _frame(rows, decoder)
    seconds = time.monotonic() - started
    frame.attrs["replay"] = {
        "topic": topic,
        "kind": decoder,
        "start_offsets": {tp.partition: start[tp] for tp in tps},
        "end_offsets": {tp.partition: stop[tp] for tp in tps},
        "scanned": scanned,
        "rows": len(frame),
        "seconds": round(seconds, 3),
    }
    log.info(
        "replayed %d message(s) of %s into %d row(s) in %.2fs",
        scanned,
        topic,
        len(frame),
        seconds,
    )
    return frame


async def _partitions(consumer: Any, topic: str, patience: float) -> list[int]:
    """The partition numbers of ``topic``, read from fresh cluster metadata.

    ``consumer.topics()`` fetches the metadata but throws it away, and a consumer
    without a subscription tracks no topic, so the cluster is asked directly (a
    request for all topics never auto-creates one).
    """
    deadline = time.monotonic() + patience
    while True:
        cluster = await consumer._client.fetch_all_metadata()
        if topic not in cluster.topics():
            raise TopicNotFound(f"topic {topic!r} does not exist on the broker")
        numbers = sorted(cluster.partitions_for_topic(topic) or ())
        if numbers:
            return numbers
        if time.monotonic() > deadline:  # partitions without a leader yet
            raise TimeoutError(f"topic {topic!r} has no available partition")
        await asyncio.sleep(0.5)


async def _consume(
    consumer: Any,
    tps: Sequence[Any],
    start: Mapping[Any, int],
    stop: Mapping[Any, int],
    *,
    decoder: str,
    window: tuple[int | None, int | None],
    limit: int | None,
    progress: bool,
    timeout: float,  # noqa: ASYNC109 - an idle timeout, not a deadline
    topic: str,
) -> tuple[list[dict[str, Any]], int]:
    from tqdm import tqdm

    active = {tp for tp in tps if start[tp] < stop[tp]}
    done = [tp for tp in tps if tp not in active]
    if done:
        consumer.pause(*done)
    total = sum(max(stop[tp] - start[tp], 0) for tp in tps)
    if limit is not None and window == (None, None):
        total = min(total, limit)  # every message scanned is a row
    rows: list[dict[str, Any]] = []
    scanned = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with tqdm(
        total=total, desc=topic, unit="msg", disable=not progress, leave=False
    ) as bar:
        while active and (limit is None or len(rows) < limit):
            batch = await consumer.getmany(*active, timeout_ms=FETCH_WAIT_MS)
            moved = 0
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= stop[tp]:
                        break
                    moved += 1
                    if _in_window(record.timestamp, *window):
                        rows.append(decode_record(record, decoder))
                        if limit is not None and len(rows) >= limit:
                            break
                if limit is not None and len(rows) >= limit:
                    break
            scanned += moved
            bar.update(moved)
            for tp in list(active):
                if await consumer.position(tp) >= stop[tp]:
                    active.discard(tp)
                    consumer.pause(tp)
            if moved:
                deadline = loop.time() + timeout
            elif active and loop.time() > deadline:
                left = {
                    tp.partition: (await consumer.position(tp), stop[tp])
                    for tp in active
                }
                raise TimeoutError(
                    f"replay of {topic!r} got nothing for {timeout:.0f}s with "
                    f"messages left (partition: (position, end)) {left}"
                )
    return rows, scanned


def replay(
    settings: Settings | None,
    topic: str,
    *,
    limit: int | None = None,
    since: Any = None,
    until: Any = None,
    kind: ReplayKind | str = "auto",
    progress: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> pd.DataFrame:
    """Synchronous :func:`replay_topic`, also usable inside Jupyter.

    Jupyter already runs an event loop in the kernel's thread, so when a loop is
    running the replay runs in a worker thread with an event loop of its own.
    ``settings=None`` loads them with :func:`streamapp.settings.load_settings`.
    """
    if settings is None:
        from streamapp.settings import load_settings

        settings = load_settings()
    kwargs: dict[str, Any] = {
        "limit": limit,
        "since": since,
        "until": until,
        "kind": kind,
        "progress": progress,
        "timeout": timeout,
    }
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(replay_topic(settings, topic, **kwargs))
    with concurrent.futures.ThreadPoolExecutor(1, "streamapp-replay") as pool:
        future = pool.submit(asyncio.run, replay_topic(settings, topic, **kwargs))
        return future.result()


# ----------------------------------------------------------------------- tables


def read_table(
    settings: Settings, table: str = "earthquakes", *, engine: Any = None
) -> pd.DataFrame:
    """Read a whole table of ``settings.postgres_schema`` into a DataFrame.

    Identifiers are quoted; times come back as UTC datetimes. Pass ``engine`` to
    reuse a SQLAlchemy engine, otherwise one is made (and disposed of) here.
    """
    import sqlalchemy

    if table not in TABLES:
        raise ValueError(f"table={table!r} is not one of {', '.join(TABLES)}")
    own = engine is None
    if own:
        engine = _make_engine(settings)
    try:
        quote = engine.dialect.identifier_preparer.quote_identifier
        sql = f"SELECT * FROM {quote(settings.postgres_schema)}.{quote(table)}"
        with engine.connect() as conn:
            frame = pd.read_sql_query(sqlalchemy.text(sql), conn)
    finally:
        if own:
            engine.dispose()
    for column in frame.columns:
        series = frame[column]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            frame[column] = series.dt.tz_convert("UTC")
        elif series.dtype == object and series.map(_is_aware).any():
            frame[column] = pd.to_datetime(series, utc=True)
    return frame


def _is_aware(value: Any) -> bool:
    return isinstance(value, datetime) and value.tzinfo is not None


def _make_engine(settings: Settings) -> Any:
    try:
        db: Any = importlib.import_module("streamapp.db")
    except ImportError:
        db = None
    factory = getattr(db, "make_engine", None)
    if callable(factory):  # streamapp.db: search_path, timeouts, application_name
        return factory(settings, pool_size=1, max_overflow=0)
    import sqlalchemy

    return sqlalchemy.create_engine(settings.sqlalchemy_url, pool_pre_ping=True)


# ----------------------------------------------------------------------- output


def check_output(out: str | Path) -> Path:
    """``out`` as a Path; raises ValueError unless it ends in .parquet or .csv."""
    path = Path(out)
    if path.suffix.lower() not in (".parquet", ".csv"):
        raise ValueError(f"{path}: the output must end in .parquet or .csv")
    return path


def write_frame(frame: pd.DataFrame, out: str | Path) -> Path:
    """Write a replayed frame to ``.parquet`` or ``.csv`` (bytes as base64 in CSV)."""
    path = check_output(out)
    suffix = path.suffix.lower()
    data = frame.copy()
    data.attrs = {}
    for column in data.columns:
        series = data[column]
        if series.dtype != object:
            continue
        kinds = {type(v) for v in series if v is not None and v is not pd.NA}
        if bytes in kinds and suffix == ".csv":
            data[column] = series.map(
                lambda v: (
                    base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v
                )
            )
        elif len(kinds) > 1 and bytes not in kinds:
            data[column] = series.map(
                lambda v: v if v is None or isinstance(v, str) else json.dumps(v)
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        data.to_parquet(path, index=False)
    else:
        data.to_csv(path, index=False)
    return path
