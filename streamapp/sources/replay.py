"""The ``replay`` source: a bundled feed capture, re-timed to now, for offline use."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamapp.exceptions import SourceResponseError
from streamapp.sources.base import (
    FetchResult,
    is_json_int,
    parse_feature_collection,
    utcnow,
)

if TYPE_CHECKING:
    from streamapp.settings import Settings

__all__ = ["ReplaySource", "retime"]


def _newest_ms(features: list[Any]) -> int | None:
    newest: int | None = None
    for feature in features:
        props = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(props, dict):
            continue
        for name in ("time", "updated"):
            value = props.get(name)
            if is_json_int(value) and (newest is None or value > newest):
                newest = value
    return newest


def retime(features: list[Any], anchor: datetime) -> list[Any]:
    """A copy of ``features`` shifted in time so the newest change is at ``anchor``.

    Every integer ``properties.time`` and ``properties.updated`` moves by the same
    number of milliseconds, chosen so the largest of them equals ``anchor``: the
    spacing between events and each event's time-to-update are preserved and no
    timestamp lies in the future. Features without such fields are copied as they
    are (the validator judges them). Deterministic: same input, same output.
    """
    out = copy.deepcopy(features)
    newest = _newest_ms(out)
    if newest is None:
        return out
    shift = int(anchor.timestamp() * 1000) - newest
    for feature in out:
        props = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(props, dict):
            continue
        for name in ("time", "updated"):
            value = props.get(name)
            if is_json_int(value):
                props[name] = value + shift
    return out


class ReplaySource:
    """Plays a captured FeatureCollection file as if it had just been fetched.

    The capture is read and re-timed once, on the first fetch, against ``anchor``
    (default: the clock at that moment); every fetch then returns the same
    features, so the pipeline's dedup table sends them once and skips them on
    later polls. A new process re-times again, which makes every event a revision
    (larger ``updated``): a restarted replay worker sends the capture once more.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        anchor: datetime | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.path = Path(path)
        self._anchor = anchor
        self._clock = clock
        self._url = self.path.resolve().as_uri()
        self._features: list[Any] | None = None
        self._size = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplaySource:
        """A replay of ``settings.replay_path`` (``REPLAY_FILE`` or the bundled day)."""
        return cls(settings.replay_path)

    @property
    def url(self) -> str:
        """The ``file://`` URL of the capture."""
        return self._url

    @property
    def anchor(self) -> datetime | None:
        """The instant the newest event was moved to (None before the first fetch)."""
        return self._anchor if self._features is not None else None

    async def fetch(self) -> FetchResult:
        """The re-timed capture (a fresh copy each time)."""
        if self._features is None:
            try:
                body = await asyncio.to_thread(self.path.read_bytes)
            except OSError as exc:
                raise SourceResponseError(
                    f"cannot read the replay file {self.path}: {exc.strerror}"
                ) from exc
            features = parse_feature_collection(body, url=self._url)
            if self._anchor is None:
                self._anchor = self._clock()
            self._features = retime(features, self._anchor)
            self._size = len(body)
        return FetchResult(
            features=copy.deepcopy(self._features),
            source_url=self._url,
            fetched_at=self._clock(),
            size_bytes=self._size,
        )

    async def close(self) -> None:
        """Nothing to release."""
