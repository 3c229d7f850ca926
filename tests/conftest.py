from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.upstream import create_fake_upstream
from tests.servers import serve

TEST_POLICIES = """
version: 1
settings:
  guard: {backend: patterns, timeout_s: 0.5}
  stream: {mode: window, window_chars: 32, overlap_chars: 16, first_window_chars: 16}
policies:
  - id: VIOLENCE
    description: Helping someone hurt people.
    message: Blocked by VIOLENCE.
  - id: FLAGME
    description: Things to watch.
    action: flag
  - id: SOFT
    description: Might fail open.
    failure_mode: open
    applies_to: output
  - id: REPLACE
    description: Replace the whole reply.
    action: rewrite
    rewrite: replace
    message: "[removed by policy]"
    applies_to: output
  - id: SECRETS
    engine: patterns
    detectors: [api_key, private_key, email, credit_card]
    action: rewrite
    rewrite: redact
  - id: BANNED
    engine: patterns
    keywords: [forbidden-word]
    message: Blocked by BANNED.
"""


@pytest.fixture
def policies_path(tmp_path: Path) -> Path:
    path = tmp_path / "policies.yaml"
    path.write_text(TEST_POLICIES)
    return path


@pytest.fixture(scope="module")
def fake_server():
    """The scripted fake upstream on a loopback port (its URL in `app.state.url`), one per test module."""
    app = create_fake_upstream()
    with serve(app) as url:
        app.state.url = url
        yield app


@pytest.fixture(scope="module")
def fake(fake_server):
    return fake_server


@pytest.fixture(scope="module")
def upstream_url(fake_server) -> str:
    """The fake upstream's base URL (one per test module)."""
    return fake_server.state.url
