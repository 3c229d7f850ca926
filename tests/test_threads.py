"""Torch's thread count is process-wide: the entry points set it (guard/threads.py), building a guard does not."""

from __future__ import annotations

import torch

from gateway.commands.workers import THREADS_ENV, configure_threads
from gateway.settings import Settings
from guard import threads
from guard.policies import PolicySet
from guard.registry import build_guard


def test_building_the_embedded_guard_leaves_the_process_thread_count_alone():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        build_guard("embedded", {"threads": 2}, PolicySet.load("policies.yaml"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_configure_sets_the_embedded_option_capped_and_nothing_for_other_backends():
    before = torch.get_num_threads()
    try:
        assert threads.configure("rsafe", {"url": "http://x"}) is None
        assert threads.configure("patterns", {}) is None
        assert threads.configure("embedded", {"threads": 1}) == 1 and torch.get_num_threads() == 1
        assert threads.configure("cascade", {"first_options": {"threads": 64}}, cap=1) == 1
        with threads.one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_serve_entry_point_applies_the_worker_cap(tmp_path, monkeypatch):
    policies = tmp_path / "policies.yaml"
    policies.write_text("settings:\n  guard:\n    backend: embedded\n    options: {threads: 2}\n"
                        "policies:\n  - {id: S1, name: Violence, description: Violent crimes.}\n")
    monkeypatch.setenv(THREADS_ENV, "1")
    before = torch.get_num_threads()
    try:
        assert configure_threads(Settings(policies=policies)) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
