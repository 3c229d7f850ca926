"""Teacher traces over the real OpenAI wire protocol, and rejection sampling."""

from __future__ import annotations

import httpx
import openai
import pytest

from guard.rsafe.prompt import render_answer
from training.demo.oracle import noisy_oracle, serve
from training.demo.synthetic import make_split
from training.rsafe.teacher import EndpointTeacher, Sample, judge, rejection_sample


def test_oracle_server_speaks_the_openai_protocol():
    """The official client (what people point at vLLM/OpenAI) talks to it unchanged."""
    with serve(lambda messages, rng: f"echo {len(messages)}") as url:
        client = openai.OpenAI(base_url=url, api_key="x")
        reply = client.chat.completions.create(model="oracle", messages=[{"role": "user", "content": "hi"}], n=2)
        assert [c.message.content for c in reply.choices] == ["echo 1", "echo 1"]
        assert client.models.list().data[0].id == "oracle"
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="oracle", messages=[])


def test_oracle_answers_do_not_depend_on_request_order():
    """Concurrent collection reaches the teacher in any order; the run must still be reproducible."""
    draw = lambda messages, rng: f"{rng.random():.12f}"  # noqa: E731
    asks = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]

    def answers(order, seed=0):
        with serve(draw, seed=seed) as url:
            client = openai.OpenAI(base_url=url, api_key="x")
            got = {i: client.chat.completions.create(model="oracle", messages=asks[i], n=2) for i in order}
            again = client.chat.completions.create(model="oracle", messages=asks[0])
        return {i: [c.message.content for c in r.choices] for i, r in got.items()}, again.choices[0].message.content

    forward, first_again = answers(range(6))
    backward, _ = answers(reversed(range(6)))
    assert forward == backward and len({v for pair in forward.values() for v in pair}) == 12
    assert first_again not in forward[0]  # asking again draws anew, deterministically
    assert answers(range(6), seed=1)[0] != forward


def test_rejection_sampling_keeps_only_right_and_well_formed():
    examples = make_split(40, seed=2)
    gold = {}
    for e in examples:
        flipped = "safe" if e.label == "unsafe" else "unsafe"
        gold[e.prompt] = (e.target(), render_answer(flipped, e.policy_ids[:1] if flipped == "unsafe" else (), e.reasoning))
    with serve(noisy_oracle(gold, wrong_rate=0.3, malformed_rate=0.2), seed=1) as url:
        teacher = EndpointTeacher(url, "oracle", concurrency=4)
        rows, stats = rejection_sample(examples, teacher, samples=3, chunk=16)
    assert stats.examples == 40 and stats.kept == len(rows) > 20
    assert stats.reasons["wrong_label"] > 0 and stats.reasons["malformed"] > 0
    by_prompt = {e.prompt: e for e in examples}
    for row in rows:
        example = by_prompt[row["prompt"][0]["content"]]
        assert row["completion"][0]["content"] == example.target()
        assert row["label"] == example.label


def test_servers_answering_one_choice_are_asked_again():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        msg = {"role": "assistant", "content": "<think>t</think>\\boxed{safe}"}
        return httpx.Response(200, json={"choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]})

    teacher = EndpointTeacher("http://teacher/v1", "m", client=httpx.Client(transport=httpx.MockTransport(handler)))
    [samples] = teacher.sample([[{"role": "user", "content": "x"}]], 3)
    assert len(samples) == 3 and len(calls) == 3


def test_reasoning_content_is_put_back_in_think_tags_and_length_stops_are_truncations():
    def handler(request: httpx.Request) -> httpx.Response:
        msg = {"role": "assistant", "content": "\\boxed{unsafe}", "reasoning_content": "S2 forbids fraud."}
        return httpx.Response(200, json={"choices": [{"index": 0, "message": msg, "finish_reason": "length"}]})

    teacher = EndpointTeacher("http://teacher/v1", "m", client=httpx.Client(transport=httpx.MockTransport(handler)))
    [[sample]] = teacher.sample([[{"role": "user", "content": "x"}]], 1)
    assert sample.text == "<think>\nS2 forbids fraud.\n</think>\n\\boxed{unsafe}"
    assert not sample.finished
    example = make_split(2, seed=0)[0]
    assert judge(sample, example) == "truncated"


def test_judge_reasons():
    example = next(e for e in make_split(10, seed=4) if e.label == "unsafe")
    assert judge(Sample(example.target(), True), example) == "ok"
    assert judge(Sample("\\boxed{unsafe}", True), example) == "malformed"
    assert judge(Sample("<think>x</think>\\boxed{safe}", True), example) == "wrong_label"
    several = next(e for e in make_split(50, seed=4) if e.label == "unsafe" and len(e.policy_ids) > len(e.violated))
    other = next(pid for pid in several.policy_ids if pid not in several.violated)
    wrong_ids = render_answer("unsafe", [other], "x")
    assert judge(Sample(wrong_ids, True), several, match_ids=True) == "wrong_ids"
    assert judge(Sample(wrong_ids, True), several) == "ok"  # ids only count with match_ids


def test_busy_teachers_are_retried_then_fail_loudly(monkeypatch):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ReadError("connection dropped")
        if len(calls) == 2:
            return httpx.Response(503)
        msg = {"role": "assistant", "content": "<think>t</think>\\boxed{safe}"}
        return httpx.Response(200, json={"choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    teacher = EndpointTeacher("http://teacher/v1", "m", client=client, retries=2)
    monkeypatch.setattr("training.rsafe.teacher.time.sleep", lambda s: None)  # no real waiting in tests
    [[sample]] = teacher.sample([[{"role": "user", "content": "x"}]], 1)
    assert sample.text.endswith("\\boxed{safe}") and len(calls) == 3

    bad = EndpointTeacher("http://teacher/v1", "m", retries=1,
                          client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))))
    with pytest.raises(httpx.HTTPStatusError):
        bad.sample([[{"role": "user", "content": "x"}]], 1)
    bad400 = EndpointTeacher("http://teacher/v1", "m", client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(400))))
    with pytest.raises(httpx.HTTPStatusError):
        bad400.sample([[{"role": "user", "content": "x"}]], 1)
