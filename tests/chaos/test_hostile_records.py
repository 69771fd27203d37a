"""Scenario 6: hostile records written straight into the raw topic, mid-stream.

Non-UTF-8 bytes, deep nesting, 5 MiB strings, NaN/Infinity, wrong types, missing
and extra fields, empty messages and tombstones, null/binary/huge keys, odd
headers: every invalid one is dead-lettered once with a kind and a reason, the
worker stays healthy and its memory stays bounded.
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from psycopg2 import sql

from tests.chaos.harness import (
    BackgroundProducer,
    ChaosData,
    ChaosRun,
    Expect,
    Figures,
    Msg,
    Profile,
    Report,
    Target,
    create_topic,
    envelope_expect,
    profile_data,
    rss_kib,
    settle,
)
from tests.support.aio import run_sync

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

MIB = 1024 * 1024
#: Kafka's default ``message.max.bytes`` (the shared and private stacks set none).
BROKER_DEFAULT_MAX = 1_048_588
#: A hostile producer: compression, and a request size far above the default.
HOSTILE_PRODUCER = {
    "compression_type": "gzip",
    "max_request_size": 16 * MIB,
    "enable_idempotence": False,
}


def _env(feature: Any, **extra: Any) -> bytes:
    return json.dumps(
        {
            "feature": feature,
            "fetched_at": "2024-06-01T12:00:00Z",
            "source_url": "chaos",
            **extra,
        },
        separators=(",", ":"),
    ).encode()


def hostile(
    n: int, base: dict[str, Any], big: int, seed: int
) -> list[tuple[str, Msg, Expect]]:
    """At least ``n`` hostile records as ``(category, message, fate)``."""
    rng = random.Random(seed)
    out: list[tuple[str, Msg, Expect]] = []
    counter = iter(range(10**9))

    def feature(**props: Any) -> dict[str, Any]:
        f = copy.deepcopy(base)
        f["id"] = f"hostile{next(counter):07d}"
        f["properties"].update(props)
        return f

    def key() -> bytes | None:
        r = rng.random()
        if r < 0.3:
            return None  # null key
        if r < 0.35:
            return b""
        if r < 0.45:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        if r < 0.47:
            return b"k" * rng.randrange(100_000, 200_000)  # large, below the bound
        return f"key{rng.randrange(10**6)}".encode()

    def add(cat: str, value: bytes | None, fate: Expect, **kw: Any) -> None:
        k = kw.get("k", key())
        if value is None and k is None:
            k = b"tombstone"  # aiokafka sends no record without key and value
        out.append((cat, Msg(k, value, kw.get("h", [])), fate))

    share = max(1, n // 11)
    for i in range(share):
        # Non-UTF-8: random bytes, and a JSON envelope with an invalid sequence.
        junk = bytes([0xFF, 0xFE]) + rng.randbytes(rng.randrange(1, 2048))
        add("non-UTF-8", junk, Expect(False, kind="not_utf8"))
        add(
            "non-UTF-8",
            _env(feature()).replace(b'"place":"', b'"place":"\xc3\x28', 1),
            Expect(False, kind="not_utf8"),
        )
        # Deep nesting: bare, unbalanced and inside a valid-looking envelope.
        depth = rng.choice([33, 100, 1000, 100_000])
        add("deep nesting", b"[" * depth + b"]" * depth, Expect(False, kind="too_deep"))
        add("deep nesting", b"{" * 5000 + b'"a":1', Expect(False, kind="too_deep"))
        nested: Any = i
        for _ in range(40):
            nested = {"x": nested}
        f = feature()
        f["properties"]["nested"] = nested
        add("deep nesting", _env(f), Expect(False, kind="too_deep"))
        # NaN / Infinity literals.
        lit = rng.choice([b"NaN", b"Infinity", b"-Infinity"])
        add(
            "NaN/Infinity",
            _env(feature(mag=1.5)).replace(b'"mag":1.5', b'"mag":' + lit, 1),
            Expect(False, kind="not_json"),
        )
        # Wrong types.
        wrong = rng.choice(
            [
                {"mag": "4.2"},
                {"mag": True},
                {"time": "yesterday"},
                {"updated": [1, 2]},
                {"sig": 1.5e300},
                {"tsunami": "yes"},
                {"felt": 2**40},
                {"place": {"a": 1}},
            ]
        )
        add("wrong types", _env(feature(**wrong)), Expect(False, kind="schema"))
        f = feature()
        f["geometry"]["coordinates"] = rng.choice([["a", "b", "c"], [1, 2], None, 5])
        add("wrong types", _env(f), Expect(False, kind="schema"))
        f = feature()
        f["id"] = rng.choice([12345, None, "", " ", True, ["x"]])
        add("wrong types", _env(f), Expect(False, kind="schema"))
        # Missing fields.
        f = feature()
        del f[rng.choice(["properties", "geometry", "id"])]
        add("missing fields", _env(f), Expect(False, kind="schema"))
        add(
            "missing fields",
            json.dumps({"fetched_at": "2024-06-01T12:00:00Z"}).encode(),
            Expect(False, kind="not_object"),
        )
        # Extra fields plus one fault: dead-lettered for the fault.
        f = feature(extra_property="x" * 100)
        f["geometry"]["coordinates"][1] = 123.4
        add(
            "extra + invalid",
            _env(f, extra_top={"a": [1, 2]}),
            Expect(False, kind="schema"),
        )
        # Empty values and tombstones; not JSON; JSON that is not an object.
        add("empty / null value", rng.choice([b"", None]), Expect(False, kind="empty"))
        add(
            "not JSON / not an object",
            rng.choice([b"{", b"}{", b'{"feature": {}} trailing', b"\x00" * 10]),
            Expect(False, kind="not_json"),
        )
        add(
            "not JSON / not an object",
            rng.choice([b"[]", b"42", b"null", b'"feature"', b"[{}]"]),
            Expect(False, kind="not_object"),
        )
        # Odd headers on an otherwise invalid message.
        add(
            "odd headers",
            b"{not json",
            Expect(False, kind="not_json"),
            h=[("", b""), ("x\u00e9", b"\xff\xfe\x00"), ("big", b"h" * 10_000)],
        )
    # Extra fields alone are NOT an error (unknown fields are ignored by design:
    # USGS adds properties): these must be stored as rows.
    for _ in range(max(2, n // 50)):
        f = feature(unknown_property={"nested": [1, 2, 3]}, another="x" * 2000)
        f["unknown_member"] = True
        value = _env(f, extra_top="ignored")
        add("extra fields only (valid)", value, envelope_expect(value))
    # 5 MiB strings: compressible, so gzip gets them past the broker's 1 MiB limit.
    for _ in range(big):
        value = b'{"feature":{"id":"' + b"A" * (5 * MIB) + b'"}}'
        add("5 MiB strings (gzip)", value, Expect(False, kind="too_large"), k=None)
        f = feature(place="P" * (5 * MIB))
        add("5 MiB strings (gzip)", _env(f), Expect(False, kind="too_large"))
    # A value just under the broker limit, as valid UTF-8 JSON (a place too long).
    f = feature(place="Q" * (BROKER_DEFAULT_MAX - 2048))
    add("~1 MiB JSON", _env(f), Expect(False, kind="schema"), k=b"near-limit")
    return out


async def _produce_one(settings: Any, topic: str, msg: Msg, options: dict) -> str:
    """Produce one message; '' when the broker took it, else the error."""
    from aiokafka import AIOKafkaProducer

    from streamapp.kafka import aiokafka_kwargs

    producer = AIOKafkaProducer(**aiokafka_kwargs(settings), **options)
    await producer.start()
    try:
        fut = await producer.send(topic, msg.value, key=msg.key)
        await fut
        return ""
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await producer.stop()


def produce_one(settings: Any, topic: str, msg: Msg, options: dict) -> str:
    return run_sync(_produce_one(settings, topic, msg, options))


def largest_accepted(run: ChaosRun) -> tuple[int, str]:
    """Binary search of the largest incompressible value the broker takes (on a
    scratch topic with the default config); returns (bytes, the refusal)."""
    topic = f"{run.tag}.probe"
    create_topic(run.settings, topic, 1)
    options = {"max_request_size": 16 * MIB, "enable_idempotence": False}
    lo, hi, refusal = 1_000_000, BROKER_DEFAULT_MAX, ""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        error = produce_one(run.settings, topic, Msg(b"k", os.urandom(mid)), options)
        if error:
            hi, refusal = mid, error
        else:
            lo = mid
    return lo, refusal


def test_hostile_records_dead_lettered_worker_healthy_memory_bounded(
    profile: Profile,
    shared_target: Target,
    chaos_run: Callable[[Target, str], ChaosRun],
    chaos_report: Report,
) -> None:
    run = chaos_run(shared_target, "hostile")
    stream = profile_data(profile, seed=606, id_offset=5_000_000)
    base = json.loads(
        next(m.value for m in stream.messages if stream.expect[m.value].valid)
    )["feature"]
    big = 10 if profile.name == "full" else 4
    records = hostile(profile.hostile, base, big, seed=607)
    figures = Figures("hostile", "Hostile records into raw", profile.name)
    run.create_raw_topic()

    # What the broker takes at all (default limits, as deployed).
    size, refusal = largest_accepted(run)
    # Refused values never reach raw: reconciliation would flag them as unknown.
    five = Msg(b"incompressible", os.urandom(5 * MIB))
    default_client = produce_one(run.settings, run.settings.topic_raw, five, {})
    raised_client = produce_one(
        run.settings,
        run.settings.topic_raw,
        five,
        {"max_request_size": 16 * MIB, "enable_idempotence": False},
    )
    assert default_client and raised_client, "a 5 MiB incompressible value got in"

    data = ChaosData(
        [m for _, m, _ in records],
        {m.value: e for _, m, e in records},
    )
    # Mix: the normal stream with the hostile records spread through it.
    rng = random.Random(608)
    mixed = list(stream.messages)
    for _, m, _ in records:
        mixed.insert(rng.randrange(len(mixed) + 1), m)
    everything = ChaosData(mixed, {**stream.expect, **data.expect}, stream.describe)

    worker = run.start_worker()
    worker.wait_healthy()
    assert worker.proc is not None
    rss_before, _ = rss_kib(worker.proc.pid)
    producer = BackgroundProducer(
        run.settings,
        run.settings.topic_raw,
        mixed,
        rate=max(50.0, len(mixed) / 60.0),
        chunk=50,
        producer_options=HOSTILE_PRODUCER,
    ).start()
    peak = rss_before
    while not producer.done:
        worker.assert_alive()
        peak = max(peak, rss_kib(worker.proc.pid)[0])
        time.sleep(0.5)
    producer.wait(60)
    settle(run, everything, figures, alive=[worker], timeout=profile.settle_timeout)
    rss_after, hwm = rss_kib(worker.proc.pid)
    status, health = worker.get("/health")

    # Per category: sent, dead-lettered, kinds.
    letters = run.db.rows(
        sql.SQL(
            "SELECT payload, error_kind, error_message FROM {} WHERE source_topic = %s"
        ).format(run.db.table("dead_letters")),
        (run.settings.topic_raw,),
    )
    kinds_by_payload: dict[bytes, Counter[str]] = {}
    for payload, kind, _ in letters:
        kinds_by_payload.setdefault(bytes(payload), Counter())[kind] += 1
    cats: dict[str, Counter[str]] = {}
    for cat, _, e in records:
        c = cats.setdefault(cat, Counter())
        c["sent"] += 1
        c["valid" if e.valid else "invalid"] += 1
    truncated = run.db.rows(
        sql.SQL(
            "SELECT count(*) FROM {} WHERE error_kind = 'too_large'"
            " AND (error_detail -> '_payload' ->> 'truncated')::boolean"
        ).format(run.db.table("dead_letters"))
    )[0][0]
    logs = run.logs()
    internal = logs.count("validator failed unexpectedly")
    if internal:
        figures.problems.append(f"{internal} internal validator errors in the log")
    figures.events_sent = len(mixed)
    figures.notes[:0] = [
        f"{len(records):,} hostile records mixed into a stream of "
        f"{len(stream.messages):,} by a gzip producer with max_request_size 16 MiB: "
        + "; ".join(
            f"{cat} {c['sent']}" + (f" ({c['valid']} valid)" if c["valid"] else "")
            for cat, c in cats.items()
        ),
        f"keys: {sum(1 for _, m, _ in records if m.key is None)} null, "
        f"{sum(1 for _, m, _ in records if m.key == b'')} empty, others binary, "
        "ASCII or 100-200 KB",
        f"broker limits as deployed (no message.max.bytes set: default "
        f"{BROKER_DEFAULT_MAX:,}): the largest incompressible value it takes is "
        f"{size:,} bytes; one byte more is refused ({refusal[:140]})",
        f"a 5 MiB incompressible value never enters the system: with aiokafka's "
        f"defaults the client refuses it ({default_client[:120]}); with "
        f"max_request_size raised the broker refuses it ({raised_client[:120]})",
        f"a 5 MiB compressible value does enter (gzip batch far below 1 MiB): "
        f"{big * 2} such records, all dead-lettered as too_large with the payload "
        f"cut to a 64 KiB prefix + sha256 ({truncated} truncated too_large letters)",
        f"worker RSS {rss_before / 1024:.0f} MiB before, {peak / 1024:.0f} MiB "
        f"sampled peak while producing, {rss_after / 1024:.0f} MiB after draining "
        f"(VmHWM {hwm / 1024:.0f} MiB); /health {status} {health.get('status')}",
        f"worker alive throughout, {internal} internal validator errors",
        "time to recover: no fault to recover from; the stream never stopped",
    ]
    figures.time_to_recover = "n/a (no stall)"
    chaos_report.add("hostile", figures)
    assert status == 200
    assert rss_after - rss_before < 512 * 1024, "worker memory grew by > 512 MiB"
    assert figures.ok, "\n".join(figures.problems)


def test_dead_letter_of_a_huge_key_does_not_hang_validation(
    shared_target: Target,
    chaos_run: Callable[[Target, str], ChaosRun],
) -> None:
    """A raw message whose KEY is huge (2 MiB, compressible, so the broker takes
    it) and whose value is invalid must be dead-lettered like any other; the
    messages after it must go on flowing.

    Fails while agents/validate.py::route sends the dead letter under the
    ORIGINAL key: the dead letter is then larger than the producer's
    max_request_size (1,000,000), ``deliver`` retries MessageSizeTooLargeError for
    ever, the batch is never acked and validation stops for good (a poison pill
    that survives restarts).
    """
    run = chaos_run(shared_target, "hugekey")
    run.create_raw_topic()
    worker = run.start_worker()
    worker.wait_healthy()
    before = [Msg(b"before%d" % i, b"{bad") for i in range(5)]
    huge = [Msg(b"K" * (2 * MIB), b"not json")]
    after = [Msg(b"after%d" % i, b"{bad") for i in range(5)]
    msgs = before + huge + after
    for part in (before + huge, after):
        producer = BackgroundProducer(
            run.settings,
            run.settings.topic_raw,
            part,
            producer_options=HOSTILE_PRODUCER,
        ).start()
        producer.wait(60)
        time.sleep(3)  # the messages after it come in a later batch
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        worker.assert_alive()
        if run.db.counts(run.settings.topic_raw)[2] == len(msgs):
            break
        time.sleep(0.5)
    stored = run.db.counts(run.settings.topic_raw)[2]
    stuck = run.logs().count("MessageSizeTooLargeError")
    assert stored == len(msgs), (
        f"{stored} of {len(msgs)} dead letters stored; {stuck} delivery retries "
        "failed with MessageSizeTooLargeError (the dead letter keeps the 2 MiB key; "
        "validation stopped at it)"
    )
