"""The benchmark's data generator: deterministic, valid where it says so."""

from __future__ import annotations

import hashlib

import pytest

from bench.generate import INVALID_KINDS, make_dataset
from models.validation import validate_raw
from streamapp.exceptions import InvalidRecord


def _digest(messages: list) -> str:
    h = hashlib.sha256()
    for m in messages:
        h.update(m.key + b"\0" + m.value + b"\0")
    return h.hexdigest()


def test_same_arguments_give_the_same_bytes() -> None:
    a = make_dataset(500, seed=3, invalid_share=0.1, revision_share=0.1)
    b = make_dataset(500, seed=3, invalid_share=0.1, revision_share=0.1)
    assert _digest(a.messages) == _digest(b.messages)
    assert a.describe() == b.describe()


def test_another_seed_gives_other_bytes() -> None:
    a = make_dataset(200, seed=3)
    b = make_dataset(200, seed=4)
    assert _digest(a.messages) != _digest(b.messages)


def test_counts_add_up() -> None:
    ds = make_dataset(1000, invalid_share=0.05, revision_share=0.1)
    assert ds.n == 1000
    assert ds.invalid == 50 == sum(ds.invalid_by_kind.values())
    assert ds.valid_ids + ds.revisions + ds.invalid == ds.n
    assert set(ds.invalid_by_kind) <= set(INVALID_KINDS)
    assert len({m.key for m in ds.messages if m.invalid is None}) == ds.valid_ids


def test_messages_are_about_a_kibibyte() -> None:
    ds = make_dataset(300, invalid_share=0.0)
    mean = sum(len(m.value) for m in ds.messages) / ds.n
    assert 700 < mean < 1300


@pytest.mark.parametrize("seed", [1, 2])
def test_validation_agrees_with_the_generator(seed: int) -> None:
    ds = make_dataset(600, seed=seed, invalid_share=0.2, revision_share=0.1)
    for offset, m in enumerate(ds.messages):
        try:
            validate_raw(
                m.value, max_bytes=1 << 20, max_depth=32, partition=0, offset=offset
            )
        except InvalidRecord as exc:
            assert exc.kind == m.invalid, (offset, exc.message)
        else:
            assert m.invalid is None, offset


def test_revisions_grow_updated_and_checksum_is_the_final_state() -> None:
    ds = make_dataset(400, seed=5, invalid_share=0.0, revision_share=0.2)
    final: dict[str, tuple] = {}
    for offset, m in enumerate(ds.messages):
        q = validate_raw(m.value, max_bytes=1 << 20, max_depth=32, offset=offset)
        old = final.get(q.id)
        if old is None or q.updated > old[0]:
            final[q.id] = (q.updated, q.time)
        else:
            pytest.fail(f"revision of {q.id} at {offset} does not grow updated")
    lag = sum(round((u - t).total_seconds() * 1000) for u, t in final.values())
    assert ds.revisions > 0
    assert lag == ds.lag_checksum_ms


def test_ids_do_not_collide_with_an_offset_data_set() -> None:
    a = make_dataset(100, invalid_share=0.0)
    b = make_dataset(100, invalid_share=0.0, id_offset=50_000_000)
    assert not {m.key for m in a.messages} & {m.key for m in b.messages}


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_dataset(-1)
    with pytest.raises(ValueError):
        make_dataset(10, invalid_share=1.5)
