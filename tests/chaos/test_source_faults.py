"""Scenario 5: source faults from a local HTTP server; the next good poll proceeds."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bench.generate import make_dataset
from tests.chaos.harness import (
    ChaosRun,
    Expect,
    Figures,
    Profile,
    Report,
    Target,
    read_topic,
    reconcile,
)
from tests.support.workers import Worker

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

INTERVAL = 2.0
TIMEOUT = 2.0
RETRIES = 2
CAP = 4 * 1024 * 1024
LONG_RETRY_AFTER = 6


@dataclass(frozen=True)
class Fault:
    """One way the source misbehaves, and what the poll must report."""

    name: str
    mode: str
    expect: str


FAULTS = [
    Fault("HTTP 500", "500", "answered HTTP 500"),
    Fault("HTTP 429, Retry-After: 1 (waited within the poll)", "429-short", "429"),
    Fault(
        f"HTTP 429, Retry-After: {LONG_RETRY_AFTER} (> interval: polls deferred)",
        "429-long",
        "429",
    ),
    Fault("no answer (timeout)", "hang", "did not answer within"),
    Fault("connection refused", "refused", "cannot connect"),
    Fault("truncated JSON (complete HTTP body)", "truncated", "truncated JSON"),
    Fault("body cut off mid-transfer", "cut", "cut off"),
    Fault("HTML instead of JSON", "html", "HTML instead of JSON"),
    Fault("body over the size cap (Content-Length)", "big-announced", "the cap"),
    Fault("body over the size cap (streamed)", "big-streamed", "the cap"),
]


@dataclass
class FaultFeed:
    """An HTTP server that serves a document, or misbehaves as told."""

    mode: str = "good"
    body: bytes = b'{"type": "FeatureCollection", "features": []}'
    log: list[tuple[float, str]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._server: http.server.ThreadingHTTPServer | None = None
        self.listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/all_hour.geojson"

    def requests(self, mode: str | None = None) -> int:
        return sum(1 for _, m in self.log if mode is None or m == mode)

    def listen(self) -> None:
        feed = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mode = feed.mode
                feed.log.append((time.monotonic(), mode))
                with contextlib.suppress(OSError):  # the client gave up: expected
                    feed.answer(self, mode)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop listening: connections are refused until :meth:`listen`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, h: http.server.BaseHTTPRequestHandler, mode: str) -> None:
        def send(status: int, body: bytes, ctype: str, **headers: str) -> None:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                h.send_header(name.replace("_", "-"), value)
            h.end_headers()
            h.wfile.write(body)

        geo = "application/geo+json"
        if mode == "good":
            send(200, self.body, geo)
        elif mode == "500":
            send(500, b"internal error", "text/plain")
        elif mode == "429-short":
            send(429, b"slow down", "text/plain", Retry_After="1")
        elif mode == "429-long":
            send(429, b"slow down", "text/plain", Retry_After=str(LONG_RETRY_AFTER))
        elif mode == "hang":
            time.sleep(TIMEOUT + 1.5)
            send(200, self.body, geo)
        elif mode == "truncated":
            send(200, self.body[: len(self.body) // 2], geo)
        elif mode == "cut":
            h.send_response(200)
            h.send_header("Content-Type", geo)
            h.send_header("Content-Length", str(len(self.body)))
            h.end_headers()
            h.wfile.write(self.body[: len(self.body) // 2])
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
        elif mode == "html":
            send(
                200,
                b"<!DOCTYPE html><html><body>Service busy</body></html>",
                "text/html",
            )
        elif mode == "big-announced":
            send(200, b" " * (CAP + 1024 * 1024) + self.body, geo)
        elif mode == "big-streamed":
            h.send_response(200)
            h.send_header("Content-Type", geo)
            h.end_headers()  # HTTP/1.0, no Content-Length: the body runs to the close
            chunk = b" " * 65536
            for _ in range((CAP + 1024 * 1024) // len(chunk)):
                h.wfile.write(chunk)
            h.wfile.write(self.body)
        else:
            raise AssertionError(mode)


def canonical(feature: Any) -> str:
    return json.dumps(feature, sort_keys=True, separators=(",", ":"))


def dedup_key(feature: Any) -> tuple[str, int]:
    """The fetcher's contract: id + integer updated, else a content hash (once)."""
    if isinstance(feature, dict) and isinstance(feature.get("id"), str):
        props = feature.get("properties")
        updated = props.get("updated") if isinstance(props, dict) else None
        if isinstance(updated, int) and not isinstance(updated, bool):
            return feature["id"], updated
    return "sha256:" + hashlib.sha256(canonical(feature).encode()).hexdigest(), 0


def make_pages(
    n: int, pages: int, seed: int, invalid: float, revisions: float
) -> tuple[list[list[Any]], dict[str, Expect]]:
    """``pages`` feeds of features (plus 10 % carried over from the previous page,
    unchanged) and the fate of every feature."""
    ds = make_dataset(n, seed=seed, invalid_share=invalid * 3, revision_share=revisions)
    features: list[Any] = []
    expect: dict[str, Expect] = {}
    for m in ds.messages:
        if m.invalid not in (None, "schema"):
            continue  # byte-level faults cannot be inside a JSON document
        feature = json.loads(m.value)["feature"]
        features.append(feature)
        if m.invalid is None:
            expect[canonical(feature)] = Expect(
                True, feature["id"], int(feature["properties"]["updated"])
            )
        else:
            expect[canonical(feature)] = Expect(False, kind="schema")
    size = -(-len(features) // pages)
    out: list[list[Any]] = []
    for i in range(pages):
        page = features[i * size : (i + 1) * size]
        carry = out[-1][-max(1, len(out[-1]) // 10) :] if out else []
        out.append(carry + page)
    return out, expect


def sent_by_fetcher(documents: list[list[Any]]) -> list[str]:
    """What the fetcher must send for these documents in turn (its contract)."""
    sent: dict[str, int] = {}
    out: list[str] = []
    for features in documents:
        chosen: dict[str, tuple[int, Any]] = {}
        for f in features:
            key, version = dedup_key(f)
            if key not in chosen or version > chosen[key][0]:
                chosen[key] = (version, f)
        for key, (version, f) in chosen.items():
            if key not in sent or version > sent[key]:
                sent[key] = version
                out.append(canonical(f))
    return out


def stats(worker: Worker) -> dict[str, Any]:
    status, body = worker.get("/api/stats")
    assert status == 200, body
    return body


def wait_stats(
    worker: Worker, what: str, ok: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.assert_alive()
        current = stats(worker)
        if ok(current):
            return current
        time.sleep(0.2)
    raise AssertionError(
        f"timed out waiting for {what}: {stats(worker)}\n{worker.tail()}"
    )


def test_source_faults_no_crash_backoff_then_good_poll(
    profile: Profile,
    shared_target: Target,
    chaos_run: Callable[[Target, str], ChaosRun],
    chaos_report: Report,
) -> None:
    run = chaos_run(shared_target, "source")
    feed = FaultFeed()
    pages, expect = make_pages(
        int(profile.events * 1.12),  # about ``events`` new versions reach raw
        len(FAULTS) + 1,
        seed=505,
        invalid=profile.invalid_share,
        revisions=profile.revision_share,
    )
    figures = Figures("source", "Source faults (HTTP server)", profile.name)
    run.create_raw_topic()
    feed.body = json.dumps({"type": "FeatureCollection", "features": pages[0]}).encode()
    worker = run.start_worker(
        extra={
            "SOURCE_URL": feed.url,
            "FETCH_INTERVAL_SECONDS": str(INTERVAL),
            "SOURCE_TIMEOUT_SECONDS": str(TIMEOUT),
            "SOURCE_MAX_RETRIES": str(RETRIES),
            "SOURCE_MAX_BYTES": str(CAP),
        }
    )
    try:
        worker.wait_healthy()
        expected_sent = sent_by_fetcher(pages)
        first = len(sent_by_fetcher(pages[:1]))
        current = wait_stats(
            worker, "the first good poll", lambda s: s["produced"] >= first, 240
        )
        lines: list[str] = []
        recoveries: list[float] = []
        for i, fault in enumerate(FAULTS, 1):
            before = current
            feed.mode = fault.mode
            if fault.mode == "refused":
                feed.close()
            started = time.monotonic()
            failed = wait_stats(
                worker,
                f"a failed poll ({fault.name})",
                lambda s, b=before: s["fetch_errors"] > b["fetch_errors"],
                120,
            )
            result = str(failed["last_fetch_result"])
            assert result.startswith("error:") and fault.expect in result, result
            assert worker.get("/health")[0] == 200
            polls = feed.requests(fault.mode)
            if fault.mode == "refused":
                feed.listen()
            # The next good poll proceeds with the next page.
            feed.body = json.dumps(
                {"type": "FeatureCollection", "features": pages[i]}
            ).encode()
            feed.mode = "good"
            healed = time.monotonic()
            want = len(sent_by_fetcher(pages[: i + 1]))
            current = wait_stats(
                worker,
                f"a good poll after {fault.name}",
                lambda s, w=want: (
                    s["produced"] >= w and str(s["last_fetch_result"]).startswith("ok:")
                ),
                180,
            )
            recoveries.append(time.monotonic() - healed)
            gap = ""
            if fault.mode == "429-long":
                served = [t for t, m in feed.log if m == "429-long"][-1]
                after = [t for t, m in feed.log if t > served]
                assert after and after[0] - served >= LONG_RETRY_AFTER - 1.0, (
                    "the next poll came before Retry-After elapsed"
                )
                gap = f"; next request {after[0] - served:.1f} s after the 429"
            lines.append(
                f"{fault.name}: {polls} request(s), fetch_errors "
                f"+{failed['fetch_errors'] - before['fetch_errors']}, fetch_retries "
                f"+{failed['fetch_retries'] - before['fetch_retries']} "
                f"(in {healed - started:.1f} s){gap}; last_fetch_result "
                f"{result[:110]!r}; good poll {recoveries[-1]:.1f} s after the fault "
                "ended"
            )
        final = current
        logs = run.logs()
    finally:
        feed.close()

    # Every feature version the fetcher had to send is in raw exactly once.
    raw = read_topic(run.settings, run.settings.topic_raw)
    got = Counter(canonical(json.loads(r.value)["feature"]) for r in raw)
    want_counts = Counter(expected_sent)
    missing = sum((want_counts - got).values())
    extra = sum((got - want_counts).values())
    if missing or extra:
        figures.problems.append(
            f"raw topic: {missing} feature versions missing, {extra} extra/re-sent"
        )

    def classify(value: bytes | None) -> Expect | None:
        try:
            return expect.get(canonical(json.loads(value or b"")["feature"]))
        except (ValueError, KeyError, TypeError):
            return None

    rows = {e.id for k, e in expect.items() if e.valid and k in want_counts}
    letters = sum(1 for k in want_counts if not expect[k].valid)
    deadline = time.monotonic() + profile.settle_timeout
    while time.monotonic() < deadline:
        n, _, dl = run.db.counts(run.settings.topic_raw)
        if (n, dl) == (len(rows), letters):
            break
        time.sleep(0.5)
    reconcile(figures, run.settings, run.db, classify)
    figures.events_sent = len(expected_sent)
    figures.seconds = time.monotonic() - run.started
    warnings = logs.count("fetch_quakes: source failed")
    backoffs = logs.count("retrying in")
    figures.notes[:0] = [
        *lines,
        f"{sum(len(p) for p in pages):,} features served in {len(pages)} good "
        f"documents (each also repeating 10 % of the previous one unchanged): "
        f"{len(expected_sent):,} new versions to send; the fetcher skipped "
        f"{final['skipped_unchanged']:,} unchanged",
        f"worker alive and /health 200 through every fault; {warnings} one-line "
        f"'source failed' warnings and {backoffs} 'retrying in' backoff lines in "
        f"the log; counters at the end: fetch_errors {final['fetch_errors']}, "
        f"fetch_retries {final['fetch_retries']}",
        f"settings: FETCH_INTERVAL_SECONDS={INTERVAL:g}, SOURCE_TIMEOUT_SECONDS="
        f"{TIMEOUT:g}, SOURCE_MAX_RETRIES={RETRIES}, SOURCE_MAX_BYTES={CAP}",
        "time to recover = the source answering well again -> the poll that "
        "produces the next page recorded as ok",
    ]
    figures.time_to_recover = f"max {max(recoveries):.1f} s"
    chaos_report.add("source", figures)
    assert warnings >= len(FAULTS) and backoffs > 0
    assert figures.ok, "\n".join(figures.problems)
