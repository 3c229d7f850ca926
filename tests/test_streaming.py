"""Streams without leaks: the hold-back window, property-tested over random chunkings."""

from __future__ import annotations

import asyncio

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.pipeline import Decision
from gateway.streams.chat import ChatStream, Window
from gateway.upstream import DONE
from guard.policies import Direction, Policy, StreamSettings

SPAN = "KILLSPAN"
POLICY = Policy(id="X", description="x", message="")


def span_guard(seen: list[str]):
    async def check(text: str, pieces: list[str]) -> Decision:
        seen.append(text)
        d = Decision(Direction.OUTPUT)
        if SPAN in text:
            d.action, d.blocking = "block", POLICY
        return d

    return check


async def _events(text: str, cuts: list[int]):
    base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    pos = 0
    for cut in sorted(set(cuts)) + [len(text)]:
        if cut > pos:
            yield {**base, "choices": [{"index": 0, "delta": {"content": text[pos:cut]}, "finish_reason": None}]}
            pos = cut
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    yield DONE


async def _run(text: str, cuts: list[int], mode: str, window: int, overlap: int) -> tuple[str, str | None, list[str]]:
    seen: list[str] = []
    stream = ChatStream(StreamSettings(mode=mode, window_chars=window, overlap_chars=overlap), span_guard(seen))
    got, finish = "", None
    async for raw in stream.run(_events(text, cuts)):
        if raw.startswith(b"data: [DONE]"):
            break
        event = orjson.loads(raw[6:])
        for c in event["choices"]:
            got += c["delta"].get("content") or ""
            finish = c["finish_reason"] or finish
    return got, finish, seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.text(alphabet="ab .", max_size=300),
    suffix=st.text(alphabet="cd .", max_size=300),
    with_span=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=700), max_size=40),
    mode=st.sampled_from(["window", "buffer"]),
    window=st.integers(min_value=16, max_value=120),
    data=st.data(),
)
def test_no_byte_of_an_unsafe_span_ever_leaks(prefix, suffix, with_span, cuts, mode, window, data):
    # The guarantee holds for unsafe spans no longer than the overlap.
    overlap = data.draw(st.integers(min_value=len(SPAN), max_value=window - 1))
    text = prefix + (SPAN if with_span else "") + suffix
    got, finish, seen = asyncio.run(_run(text, cuts, mode, window, overlap))
    assert text.startswith(got), "only the reply's own text, in order"
    if with_span:
        assert finish == "content_filter"
        assert len(got) <= len(prefix), "a byte of the unsafe span (or what follows it) reached the client"
    else:
        assert got == text and finish == "stop"
    # every released character was inside some checked window
    assert all(any(got[i:i + 1] and got[max(0, i - overlap):i + 1] in s for s in seen) for i in range(0, len(got), 7))


async def test_window_releases_only_checked_text():
    seen: list[str] = []
    w = Window(StreamSettings(mode="window", window_chars=20, overlap_chars=5), span_guard(seen))
    released = ""
    for ch in "x" * 100:
        out, blocked = await w.feed(ch)
        assert blocked is None
        released += out
    assert len(released) <= 100 - 5 and seen, "the last overlap is held back"
    out, blocked, _ = await w.finish()
    assert released + out == "x" * 100


async def test_async_mode_releases_at_once_then_cuts():
    seen: list[str] = []
    stream = ChatStream(StreamSettings(mode="async", window_chars=16, overlap_chars=8), span_guard(seen))
    text = "a" * 20 + SPAN + "b" * 40
    got = ""
    finish = None
    async for raw in stream.run(_events(text, list(range(0, len(text), 4)))):
        if raw.startswith(b"data: [DONE]"):
            break
        for c in orjson.loads(raw[6:])["choices"]:
            got += c["delta"].get("content") or ""
            finish = c["finish_reason"] or finish
    assert finish == "content_filter"
    assert len(got) < len(text), "the stream was cut"
    assert len(got) <= len(prefix := "a" * 20) + len(SPAN) + 16, prefix  # at most one window of exposure
