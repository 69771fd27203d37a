"""Deterministic USGS-shaped raw messages, and producing them to a raw topic."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "INVALID_KINDS",
    "Dataset",
    "Message",
    "ProduceResult",
    "make_dataset",
    "produce",
    "produce_paced",
]

#: Start of the synthetic catalogue (event times grow from here, one every ~2 s).
BASE_TIME_MS = 1_717_200_000_000  # 2024-06-01T00:00:00Z
#: ``fetched_at`` of the first message; later ones add one millisecond each.
BASE_FETCHED_AT = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
SOURCE_URL = (
    "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson"
)

#: The invalid kinds the generator makes, with their weights (``too_large`` needs
#: messages over MAX_MESSAGE_BYTES and is left out: it would dominate the bytes).
INVALID_KINDS: dict[str, int] = {
    "schema": 50,
    "not_json": 15,
    "not_utf8": 10,
    "empty": 5,
    "not_object": 10,
    "too_deep": 10,
}

_NETS = ["ak", "ci", "nc", "us", "hv", "nn", "uw", "tx", "pr", "mb", "ok", "uu"]
_DIRS = ["N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W"]
_PLACES = [
    "San Miguel, CA",
    "Anchorage, Alaska",
    "Pahala, Hawaii",
    "Ridgecrest, CA",
    "Tonopah, Nevada",
    "Petrolia, CA",
    "Searles Valley, CA",
    "Big Lake, Alaska",
    "Maria Antonia, Puerto Rico",
    "Stanley, Idaho",
    "Mentone, Texas",
    "Salton City, CA",
]
_TYPES = [
    ",nearby-cities,origin,phase-data,",
    ",origin,phase-data,",
    ",dyfi,nearby-cities,origin,phase-data,scitech-link,",
    ",dyfi,focal-mechanism,moment-tensor,nearby-cities,origin,phase-data,shakemap,",
]
_MAG_TYPES = ["md", "ml", "mb", "mww", "mb_lg", "mh"]
_STATUSES = ["automatic", "reviewed"]


@dataclass(frozen=True)
class Message:
    """One raw-topic message: key (event id) and value, plus what it should become."""

    key: bytes
    value: bytes
    #: ``None`` for a valid message, else the error kind validation must report.
    invalid: str | None = None


@dataclass(frozen=True)
class Dataset:
    """The messages of one run and the rows they must end as."""

    messages: list[Message]
    seed: int
    invalid_share: float
    revision_share: float
    #: Distinct valid event ids: the rows the events table must hold at the end.
    valid_ids: int
    #: Invalid messages: the rows the dead-letter table must hold at the end.
    invalid: int
    #: Valid messages that revise an id seen earlier (upserts, not new rows).
    revisions: int
    invalid_by_kind: dict[str, int] = field(default_factory=dict)
    #: Sum over the valid ids of ``updated - time`` (ms) of their newest revision:
    #: a checksum telling that every revision reached the table, not just every id.
    lag_checksum_ms: int = 0

    @property
    def n(self) -> int:
        return len(self.messages)

    @property
    def total_bytes(self) -> int:
        return sum(len(m.key) + len(m.value) for m in self.messages)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (what a result file records about the data)."""
        return {
            "n": self.n,
            "seed": self.seed,
            "invalid_share": self.invalid_share,
            "revision_share": self.revision_share,
            "valid_ids": self.valid_ids,
            "invalid": self.invalid,
            "revisions": self.revisions,
            "invalid_by_kind": dict(sorted(self.invalid_by_kind.items())),
            "mean_value_bytes": round(
                sum(len(m.value) for m in self.messages) / max(self.n, 1), 1
            ),
        }


def _feature(rng: random.Random, i: int, event_id: str, net: str) -> dict[str, Any]:
    """A GeoJSON feature shaped like the USGS summary feed's (same keys and types)."""
    mag = round(rng.uniform(-0.5, 6.5), 2)
    t = BASE_TIME_MS + i * 2000 + rng.randrange(2000)
    place = f"{rng.randrange(1, 120)} km {rng.choice(_DIRS)} of {rng.choice(_PLACES)}"
    reviewed = rng.random() < 0.4
    felt = rng.randrange(0, 500) if mag > 3 else None
    return {
        "type": "Feature",
        "properties": {
            "mag": mag,
            "place": place,
            "time": t,
            "updated": t + rng.randrange(60_000, 3_600_000),
            "tz": None,
            "url": f"https://earthquake.usgs.gov/earthquakes/eventpage/{event_id}",
            "detail": (
                "https://earthquake.usgs.gov/earthquakes/feed/v1.0/detail/"
                f"{event_id}.geojson"
            ),
            "felt": felt,
            "cdi": round(rng.uniform(1, 6), 1) if felt else None,
            "mmi": round(rng.uniform(1, 7), 3) if mag > 4 else None,
            "alert": "green" if mag > 5 else None,
            "status": _STATUSES[reviewed],
            "tsunami": int(mag > 6),
            "sig": max(0, int(mag * mag * 20)),
            "net": net,
            "code": event_id[len(net) :],
            "ids": f",{event_id},",
            "sources": f",{net},",
            "types": rng.choice(_TYPES),
            "nst": rng.randrange(3, 120),
            "dmin": round(rng.uniform(0.001, 3.0), 4),
            "rms": round(rng.uniform(0.01, 1.2), 2),
            "gap": rng.randrange(20, 300),
            "magType": rng.choice(_MAG_TYPES),
            "type": "earthquake",
            "title": f"M {mag:.1f} - {place}",
        },
        "geometry": {
            "type": "Point",
            "coordinates": [
                round(rng.uniform(-179.99, 179.99), 6),
                round(rng.uniform(-89.99, 89.99), 6),
                round(rng.uniform(-3.0, 650.0), 3),
            ],
        },
        "id": event_id,
    }


def _envelope(feature: Any, i: int) -> bytes:
    fetched_at = BASE_FETCHED_AT + timedelta(milliseconds=i)
    return json.dumps(
        {
            "feature": feature,
            "fetched_at": fetched_at.isoformat().replace("+00:00", "Z"),
            "source_url": SOURCE_URL,
        },
        separators=(",", ":"),
    ).encode("utf-8")


def _invalid(rng: random.Random, kind: str, i: int, event_id: str, net: str) -> bytes:
    """A message validation must reject with error kind ``kind``."""
    if kind == "empty":
        return b""
    if kind == "not_utf8":
        return b"\xff\xfe" + _envelope(_feature(rng, i, event_id, net), i)[2:]
    if kind == "not_json":
        return _envelope(_feature(rng, i, event_id, net), i)[:-7]
    if kind == "not_object":
        return json.dumps([event_id, i]).encode("utf-8")
    if kind == "too_deep":
        nested: Any = "deep"
        for _ in range(64):
            nested = {"x": nested}
        return _envelope(nested, i)
    if kind == "schema":
        feature = _feature(rng, i, event_id, net)
        broken = rng.randrange(4)
        if broken == 0:
            feature["geometry"]["coordinates"][1] = 123.4  # latitude out of range
        elif broken == 1:
            feature["properties"]["time"] = "yesterday"
        elif broken == 2:
            del feature["id"]
        else:
            feature["geometry"] = None
        return _envelope(feature, i)
    raise ValueError(f"unknown invalid kind {kind!r}")


def make_dataset(
    n: int,
    *,
    seed: int = 20240601,
    invalid_share: float = 0.02,
    revision_share: float = 0.0,
    id_offset: int = 0,
) -> Dataset:
    """``n`` raw messages, the same bytes for the same arguments.

    ``invalid_share`` of them (rounded to the nearest message, spread at random) are
    invalid in one of :data:`INVALID_KINDS`; ``revision_share`` of the valid ones
    revise an event sent earlier (same id and time, later ``updated``, other
    values). ``id_offset`` shifts the ids (a second data set that must not collide).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if not 0.0 <= invalid_share <= 1.0 or not 0.0 <= revision_share < 1.0:
        raise ValueError("shares must be within [0, 1)")
    rng = random.Random(seed)
    n_invalid = round(n * invalid_share)
    invalid_at = set(rng.sample(range(n), n_invalid))
    kinds = list(INVALID_KINDS)
    weights = [INVALID_KINDS[k] for k in kinds]
    messages: list[Message] = []
    sent: list[tuple[int, str, str]] = []  # (index, id, net) of valid events so far
    lag: dict[str, int] = {}  # id -> updated - time (ms) of its newest version
    first_time: dict[str, int] = {}
    by_kind: Counter[str] = Counter()
    revisions = 0
    for i in range(n):
        net = _NETS[i % len(_NETS)]
        if i in invalid_at:
            kind = rng.choices(kinds, weights)[0]
            event_id = f"{net}bad{i:08d}"
            value = _invalid(rng, kind, i, event_id, net)
            messages.append(Message(event_id.encode(), value, kind))
            by_kind[kind] += 1
            continue
        if sent and rng.random() < revision_share:
            first, event_id, net = sent[rng.randrange(len(sent))]
            feature = _feature(rng, first, event_id, net)
            props = feature["properties"]
            props["time"] = first_time[event_id]
            # Later than any first version's ``updated`` (which is < time + 1 h)
            # and than any earlier revision's.
            props["updated"] = props["time"] + 3_600_000 + i
            lag[event_id] = 3_600_000 + i
            props["status"] = "reviewed"
            revisions += 1
        else:
            event_id = f"{net}{70_000_000 + id_offset + i:08d}"
            feature = _feature(rng, i, event_id, net)
            sent.append((i, event_id, net))
            props = feature["properties"]
            first_time[event_id] = props["time"]
            lag[event_id] = props["updated"] - props["time"]
        messages.append(Message(event_id.encode(), _envelope(feature, i)))
    return Dataset(
        messages=messages,
        seed=seed,
        invalid_share=invalid_share,
        revision_share=revision_share,
        valid_ids=len(sent),
        invalid=n_invalid,
        revisions=revisions,
        invalid_by_kind=dict(by_kind),
        lag_checksum_ms=sum(lag.values()),
    )


@dataclass(frozen=True)
class ProduceResult:
    """How producing went: count, bytes, seconds, and per-message send times."""

    n: int
    bytes: int
    seconds: float
    #: Wall-clock (epoch seconds) of each ``send`` call, in message order.
    sent_at: list[float] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.rate, 1),
            "mib_per_s": round(self.bytes / max(self.seconds, 1e-9) / 2**20, 2),
        }


def producer_kwargs() -> dict[str, Any]:
    """The producer settings used for the raw topic (durable and batched)."""
    return {
        "acks": "all",
        "linger_ms": 20,
        "compression_type": "gzip",
        "max_batch_size": 512 * 1024,
        "enable_idempotence": False,
    }


async def produce(
    messages: Sequence[Message], topic: str, kafka: dict[str, Any]
) -> ProduceResult:
    """Produce every message to ``topic`` as fast as the broker takes them."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka, **producer_kwargs())
    await producer.start()
    try:
        start = time.perf_counter()
        futures = []
        size = 0
        for m in messages:
            futures.append(await producer.send(topic, m.value, key=m.key))
            size += len(m.key) + len(m.value)
        await producer.flush()
        await asyncio.gather(*futures)
        seconds = time.perf_counter() - start
    finally:
        await producer.stop()
    return ProduceResult(len(messages), size, seconds)


async def produce_paced(
    messages: Sequence[Message],
    topic: str,
    kafka: dict[str, Any],
    *,
    rate: float,
    tick: float = 0.01,
) -> ProduceResult:
    """Produce at a fixed offered ``rate`` (events/s), recording each send time.

    Every ``tick`` seconds the messages due by then are handed to the producer with
    a small linger, so a message's produce time is its send time within ~5 ms.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        **kafka, acks="all", linger_ms=5, compression_type="gzip"
    )
    await producer.start()
    sent_at: list[float] = []
    try:
        futures = []
        size = 0
        start = time.perf_counter()
        wall0 = time.time() - start
        i = 0
        while i < len(messages):
            due = min(len(messages), int((time.perf_counter() - start) * rate) + 1)
            while i < due:
                m = messages[i]
                sent_at.append(wall0 + time.perf_counter())
                futures.append(await producer.send(topic, m.value, key=m.key))
                size += len(m.key) + len(m.value)
                i += 1
            await asyncio.sleep(tick)
        await producer.flush()
        await asyncio.gather(*futures)
        seconds = time.perf_counter() - start
    finally:
        await producer.stop()
    return ProduceResult(len(messages), size, seconds, sent_at)
