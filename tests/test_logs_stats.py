"""`rsafe logs stats`: the numbers, checked against a brute-force count of the same lines."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gateway.blocklog import stats as logstats
from gateway.blocklog.reader import Filter
from tests.fakes.blocklogs import read_lines, write_log


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("stats") / "blocks.jsonl"
    files = write_log(path, 6000, files=3, gzip_rotated=1, seed=3, step_s=20)
    return path, read_lines(files)


def brute(lines: list[dict]) -> dict:
    decisions = Counter()
    policies: dict[str, Counter] = {}
    hours = Counter()
    fail_open = fail_closed = 0
    for r in lines:
        d = "fail_open" if r["decision"] == "allow" and r["fail_open"] else r["decision"]
        decisions[d] += 1
        hours[r["ts"][:13]] += 1
        for o in r["outcomes"]:
            policies.setdefault(o["policy"], Counter())[o["action"]] += 1
            if o["reason"] == "guard_error":
                fail_open += o["action"] == "fail_open"
                fail_closed += o["action"] != "fail_open"
    return {"decisions": decisions, "policies": policies, "hours": hours, "fail_open": fail_open, "fail_closed": fail_closed}


def test_counts_match_brute_force(log):
    path, lines = log
    s = logstats.compute(path).summary()
    want = brute(lines)
    assert s["lines"] == len(lines)
    assert {d: v["count"] for d, v in s["decisions"].items()} == dict(want["decisions"])
    for policy, counter in want["policies"].items():
        got = s["policies"][policy]
        assert {k: got.get(k, 0) for k in counter} == dict(counter)
    assert {h: sum(v.values()) for h, v in s["buckets"].items()} == dict(want["hours"])
    assert s["failure_mode"]["fail_open"] == want["fail_open"] > 0
    assert s["failure_mode"]["fail_closed"] == want["fail_closed"] > 0
    assert s["from"] == lines[0]["ts"] and s["to"] == lines[-1]["ts"]


def test_fail_open_is_never_counted_as_a_pass(log):
    path, lines = log
    s = logstats.compute(path).summary()
    assert "allow" not in s["decisions"]  # the synthetic log has no plain allows
    assert s["decisions"]["fail_open"]["count"] == sum(1 for r in lines if r["fail_open"])


def test_latency_percentiles_per_guard(log):
    path, lines = log
    s = logstats.compute(path).summary()
    for guard in ("embedded", "rsafe"):
        values = np.array([r["latency_ms"] for r in lines if r["guard"] == guard])
        got = s["latency_ms"][guard]
        assert got["count"] == len(values)
        assert got["p50"] == pytest.approx(np.percentile(values, 50), abs=1e-3)
        assert got["p99"] == pytest.approx(np.percentile(values, 99), abs=1e-3)
    assert s["latency_ms"]["all"]["count"] == len(lines)


def test_rates_and_days(log):
    path, lines = log
    s = logstats.compute(path, by="day").summary()
    hours = s["hours"]
    assert hours == pytest.approx((6000 - 1) * 20 / 3600, rel=1e-3)
    block = s["decisions"]["block"]
    assert block["share"] == pytest.approx(block["count"] / len(lines))
    assert block["per_hour"] == pytest.approx(block["count"] / hours, rel=1e-3)
    assert all(len(k) == 10 for k in s["buckets"])


def test_parallel_equals_serial_and_filters_apply(log):
    path, lines = log
    filt = Filter(policies=("S9",), directions=("output",))
    serial = logstats.compute(path, filt, workers=1).summary()
    old = logstats._PARALLEL_BYTES
    logstats._PARALLEL_BYTES = 0
    try:
        parallel = logstats.compute(path, filt, workers=2).summary()
    finally:
        logstats._PARALLEL_BYTES = old
    assert serial == parallel
    assert serial["lines"] == sum(1 for r in lines if "S9" in r["policies"] and r["direction"] == "output")


def test_since_skips_old_files_and_counts_the_rest(log):
    path, lines = log
    since = lines[-500]["ts"]
    s = logstats.compute(path, Filter(since=since)).summary()
    assert s["lines"] == 500


def test_unreadable_lines_are_counted_not_fatal(tmp_path):
    path = tmp_path / "blocks.jsonl"
    path.write_text('{"ts":"2026-01-01T00:00:00.000000Z","decision":"block","outcomes":[]}\ngarbage\n{"no_ts":1}\n')
    s = logstats.compute(path).summary()
    assert s["lines"] == 1 and s["unreadable"] == 2


def test_empty_or_missing_log(tmp_path):
    s = logstats.compute(tmp_path / "none.jsonl").summary()
    assert s["lines"] == 0 and s["decisions"] == {}


def test_cache_reuses_rotated_files_only_and_gives_the_same_numbers(tmp_path):
    from gateway.blocklog.cache import StatsCache

    path = tmp_path / "log" / "blocks.jsonl"
    files = write_log(path, 3000, files=3, gzip_rotated=1, seed=9)
    cache = StatsCache(tmp_path / "cache")
    cold = logstats.compute(path, cache=cache).summary()
    assert (cache.hits, len(list((tmp_path / "cache").glob("*.pickle")))) == (0, 2)  # the live file is not cached
    warm = logstats.compute(path, cache=cache).summary()
    assert cache.hits == 2 and warm == cold == logstats.compute(path).summary()
    filtered = logstats.compute(path, Filter(policies=("S1",)), cache=cache).summary()
    assert filtered == logstats.compute(path, Filter(policies=("S1",))).summary() != cold
    with open(files[1], "ab") as fh:  # a rotated file that changed is a miss, not stale numbers
        fh.write(files[2].read_bytes().splitlines(keepends=True)[0])
    assert logstats.compute(path, cache=cache).summary()["lines"] == cold["lines"] + 1


@pytest.mark.parametrize("filt", [
    Filter(policies=("S9", "S2")), Filter(decisions=("error",), directions=("input",)),
    Filter(policies=("S10",), decisions=("fail_open",)), Filter(models=("llama-3-8b",), policies=("S1",)),
])
def test_byte_exact_filters_count_like_the_full_filter(log, filt):
    path, lines = log
    got = logstats.compute(path, filt, workers=1).summary()
    want = [r for r in lines if filt.match(r)]
    assert got["lines"] == len(want) > 0
    assert {d: v["count"] for d, v in got["decisions"].items()} == dict(brute(want)["decisions"])
