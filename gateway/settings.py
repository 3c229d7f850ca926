"""The one typed settings object, built once at start-up and passed down.

Sources, highest first: CLI flags, `RSAFE_*` environment variables, defaults.
What users change while the gateway runs (policies, guard backend, stream window)
lives in `policies.yaml` instead, which is reloaded on change.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class UpstreamRoute(BaseModel):
    """Where requests for models matching `match` (a glob) go.

    `provider: openai` speaks the OpenAI wire protocol over the pooled aiohttp session
    (vLLM, OpenAI, Azure-compatible proxies, Ollama...). `provider: litellm` hands
    the call to litellm (imported only if such a route exists) for other APIs.
    """

    model_config = ConfigDict(extra="forbid")

    match: str = "*"
    provider: Literal["openai", "litellm"] = "openai"
    url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None  # rename the model on the way upstream (litellm: "anthropic/claude-...")

    def matches(self, model: str) -> bool:
        return fnmatch.fnmatchcase(model, self.match)


class GatewayKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    key: SecretStr
    # How input blocks are answered for this key (see Policy.input_block); None: the policy says.
    input_block: Literal["error", "completion"] | None = None


class Settings(BaseSettings):
    # env_ignore_empty: `RSAFE_X=""` means unset, for every setting (docker-compose's `${VAR:-}`
    # writes "" for an unset VAR): an empty RSAFE_UPSTREAM_API_KEY forwards the client's own key,
    # an empty RSAFE_ADMIN_KEY keeps /admin off, an empty RSAFE_GATEWAY_KEYS means no gateway keys.
    model_config = SettingsConfigDict(env_prefix="RSAFE_", extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = 8080
    policies: Path = Path("policies.yaml")
    policies_poll_s: float = Field(default=1.0, gt=0)

    # Default upstream (OpenAI-compatible) and optional routes by model name.
    upstream: str = "https://api.openai.com/v1"
    upstream_api_key: SecretStr | None = None
    upstream_routes: list[UpstreamRoute] = []
    upstream_timeout_s: float = Field(default=120.0, gt=0)
    upstream_connect_timeout_s: float = Field(default=10.0, gt=0)
    upstream_max_connections: int = 512
    # Forward the client's own Authorization header when no upstream key is configured.
    forward_client_auth: bool = True

    # Guard override from the command line / environment (else policies.yaml settings.guard).
    guard: str | None = None
    guard_url: str | None = None
    guard_model: str | None = None
    guard_api_key: SecretStr | None = None  # RSAFE_GUARD_API_KEY: for guard servers that need a key

    block_log: Path = Path("logs/blocks.jsonl")
    block_log_max_bytes: int = 50 * 1024 * 1024
    block_log_backups: int = 10
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    max_body_bytes: int = 4 * 1024 * 1024
    # A client that declares more body than it sends gets a 408 after this long (a deadline for the whole body).
    body_read_timeout_s: float = Field(default=30.0, gt=0)
    # `rsafe guard serve`: only /v1/moderations and the health/metrics routes (no upstream).
    guard_only: bool = False
    # `rsafe serve --workers N`: N gateway processes sharing the port (gateway/commands/workers.py).
    workers: int = Field(default=1, ge=1, le=256)
    gateway_keys: list[GatewayKey] = []
    admin_key: SecretStr | None = None
    # How long an /admin login session lasts (the signed cookie's expiry).
    admin_session_hours: float = Field(default=12.0, gt=0, le=24 * 366)

    @field_validator("upstream")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.rstrip("/")

    def route_for(self, model: str) -> UpstreamRoute:
        for route in self.upstream_routes:
            if route.matches(model):
                return route
        return UpstreamRoute(match="*", url=self.upstream, api_key=self.upstream_api_key)

    # Retention: rotated block-log files last written more than this many days ago are
    # deleted (at start-up, then hourly; `rsafe logs prune` does it by hand). None keeps all.
    block_log_retention_days: float | None = Field(default=None, gt=0)
