"""Building a gateway app with the /admin view for tests (admin, browser and privacy tests)."""

from __future__ import annotations

from pathlib import Path

from gateway.admin.view import admin_routes
from gateway.app import create_app
from gateway.settings import Settings
from tests.fakes.guard import ScriptedGuard

ADMIN_KEY = "adm-key-Zq81-never-shown"
UPSTREAM_KEY = "sk-upstream-secret-Pw93-never-shown"
GATEWAY_KEY = "gw-key-Hx27-never-shown"
ROOT = Path(__file__).resolve().parent.parent


def with_admin(app):
    """Add the /admin routes unless create_app already registers them (once the lead wires them)."""
    if not any(getattr(r, "name", None) == "admin" for r in app.router.routes):
        app.router.routes.extend(admin_routes())
    return app


def admin_app(tmp_path: Path, policies: Path, upstream_url: str, **overrides):
    settings = Settings(
        policies=policies, upstream=upstream_url.rstrip("/") + "/v1", block_log=tmp_path / "logs" / "blocks.jsonl",
        upstream_api_key=UPSTREAM_KEY, admin_key=ADMIN_KEY, **overrides,
    )
    return with_admin(create_app(settings, guard=ScriptedGuard()))
