"""Property-based tests (hypothesis): argument serialisation round trips and
option validation.

The properties are about the codec and option checks that every enqueue goes
through: whatever ``enqueue`` accepts, the worker can decode back to equal
values; whatever options ``Task.options`` accepts, the enqueue path can turn
into the integers the scripts are sent.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aioqueue
from aioqueue.errors import PayloadError

app = aioqueue.App("redis://127.0.0.1:1/0")


class Point(pydantic.BaseModel):
    x: int
    label: str


@app.task(name="everything")
async def everything(
    n: int,
    text: str,
    ratio: float,
    items: list[int],
    table: dict[str, int],
    when: datetime,
    ident: uuid.UUID,
    point: Point,
    maybe: int | None = None,
    /,
) -> None:
    return None


@app.task(name="kw")
async def kw(a: int, *, b: str = "x", c: list[float] | None = None) -> int:
    return a


codec = everything.codec
finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(st.characters(blacklist_categories=("Cs",)))  # no lone surrogates
aware = st.datetimes(timezones=st.just(UTC))
points = st.builds(Point, x=st.integers(-(2**63), 2**63), label=text)

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.integers(), text, finite, st.lists(st.integers()),
       st.dictionaries(text, st.integers()), aware, st.uuids(), points,
       st.none() | st.integers())
def test_typed_arguments_round_trip(n: int, s: str, ratio: float, items: list[int],
                                    table: dict[str, int], when: datetime, ident: uuid.UUID,
                                    point: Point, maybe: int | None) -> None:
    args = (n, s, ratio, items, table, when, ident, point, maybe)
    payload = codec.encode(args, {})
    pos, kwargs = codec.decode(payload)
    assert kwargs == {}
    assert tuple(pos) == args


@FAST
@given(st.integers(), st.none() | text,
       st.none() | st.lists(finite))
def test_keyword_arguments_round_trip(a: int, b: str | None, c: list[float] | None) -> None:
    kwargs: dict[str, Any] = {"c": c}
    if b is not None:
        kwargs["b"] = b
    pos, decoded = kw.codec.decode(kw.codec.encode((a,), kwargs))
    assert pos == []
    assert decoded == {"a": a, "b": b if b is not None else "x", "c": c}


@FAST
@given(st.lists(st.integers() | text | finite | st.none() | st.booleans(), max_size=5),
       st.dictionaries(st.text(min_size=1, max_size=5).filter(str.isidentifier),
                       st.integers() | text, max_size=3))
def test_untyped_enqueue_by_name_round_trips(args: list[Any], kwargs: dict[str, Any]) -> None:
    import json

    from aioqueue.codec import encode_untyped
    assert json.loads(encode_untyped(tuple(args), kwargs)) == [args, kwargs]


@FAST
@given(st.floats() | st.text())
def test_accepted_arguments_are_decodable(value: Any) -> None:
    """Whatever enqueue accepts, the worker can decode to an equal value
    (NaN and infinities, lone surrogates included)."""
    fn_codec = _float_or_text_codec(value)
    try:
        payload = fn_codec.encode((value,), {})
    except (pydantic.ValidationError, PayloadError):
        return  # refused at enqueue: fine, nothing written
    (decoded,), _ = fn_codec.decode(payload)
    if isinstance(value, float) and math.isnan(value):
        assert isinstance(decoded, float) and math.isnan(decoded)
    else:
        assert decoded == value


def _float_or_text_codec(value: Any) -> Any:
    return ffloat.codec if isinstance(value, float) else ftext.codec


@app.task(name="ffloat")
async def ffloat(x: float, /) -> None:
    return None


@app.task(name="ftext")
async def ftext(x: str, /) -> None:
    return None


# -- option validation ------------------------------------------------------

def _check_usable(name: str, value: Any) -> None:
    """Either ``options`` refuses the value with ConfigurationError (before
    any write), or the enqueue path turns it into a finite integer with the
    meaning asked for."""
    try:
        task = kw.options(**{name: value})
    except aioqueue.ConfigurationError:
        return
    try:
        job = task.prepare((1,), {})
        prio, delay_ms, extra = job.priority, job.delay_ms, job.fields
    except aioqueue.ConfigurationError:
        return
    assert isinstance(prio, int) and not isinstance(prio, bool) and -100 <= prio <= 100
    # scripts compute with doubles: beyond 2**53 ms the due time is meaningless
    assert isinstance(delay_ms, int) and 0 <= delay_ms < 2**53
    for key in ("to", "rt"):
        if key in extra:
            # 0 means "no timeout": a positive timeout must not become 0
            assert isinstance(extra[key], int) and 0 < int(extra[key]) < 2**53, extra
    if "mt" in extra:
        assert type(extra["mt"]) is int and int(extra["mt"]) >= 1, extra


@FAST
@given(st.sampled_from(["priority", "max_tries"]),
       st.integers(-(2**70), 2**70) | st.just("1") | st.floats(-200, 200))
def test_integer_options_refused_or_usable(name: str, value: Any) -> None:
    _check_usable(name, value)


@FAST
@given(st.sampled_from(["delay", "timeout", "result_ttl", "max_tries"]),
       st.floats() | st.integers(-(2**70), 2**70) | st.booleans())
def test_numeric_options_refused_or_usable(name: str, value: Any) -> None:
    _check_usable(name, value)


@pytest.mark.parametrize("options", [
    {"priority": 101}, {"priority": -101}, {"priority": 1.5}, {"priority": True},
    {"delay": -1}, {"delay": math.nan}, {"max_tries": 0}, {"timeout": 0},
    {"result_ttl": -5}, {"job_id": "has space"}, {"job_id": "a{b}"}, {"queue": "x:y"},
])
async def test_invalid_options_write_nothing(options: dict[str, Any],
                                             make_app: Callable[..., aioqueue.App]) -> None:
    live = make_app()

    @live.task
    async def noop(x: int) -> int:
        return x

    async with live:
        before = await live.broker.client.dbsize()
        with pytest.raises(aioqueue.ConfigurationError):
            await noop.options(**options).enqueue(1)
        assert await live.broker.client.dbsize() == before
