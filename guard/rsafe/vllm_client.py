"""The `vllm` engine: an OpenAI-compatible server (vLLM in production) over httpx.

- One or several base URLs; each request goes to the URL with the fewest requests
  in flight (ties broken round-robin), and a connection failure is retried once on
  another URL. Replicas of `vllm serve` behind one gateway need nothing else.
- `/v1/chat/completions` (the server applies the model's chat template) or
  `/v1/completions` (the prompt is wrapped in `completion_template`, for models
  served without a chat template or trained on a raw prompt).
- Greedy by default: a guard should give the same verdict to the same text.
- A semaphore bounds the requests in flight from this process; checks are sent
  concurrently because vLLM batches concurrent requests itself (continuous
  batching), which is where its throughput comes from.
- A reasoning parser on the server (`--reasoning-parser deepseek_r1`) moves the
  think block into `message.reasoning` / `reasoning_content`; it is put back
  as `<think>...</think>` so that the parser sees one format.

Every transport or protocol problem becomes `GuardFailure` here, at one boundary.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx

from guard.errors import GuardConfigError, GuardFailure
from guard.rsafe.engines import Generation, Prompt


class VLLMEngine:
    name = "vllm"

    def __init__(
        self,
        urls: list[str],
        model: str | None = None,
        *,
        endpoint: str = "chat",
        completion_template: str = "{prompt}",
        timeout_s: float = 30.0,
        max_in_flight: int = 64,
        temperature: float = 0.0,
        api_key: str | None = None,
        extra_body: dict[str, Any] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not urls:
            raise GuardConfigError("the vllm engine needs at least one url (options.url or RSAFE_GUARD_URL)")
        if endpoint not in ("chat", "completions"):
            raise GuardConfigError(f"endpoint must be 'chat' or 'completions', not {endpoint!r}")
        if "{prompt}" not in completion_template:
            raise GuardConfigError("completion_template must contain {prompt}")
        self.urls = [_api_base(u) for u in urls]
        self.model = model
        self.endpoint = endpoint
        self.completion_template = completion_template
        self.timeout_s = timeout_s
        self.temperature = temperature
        self.extra_body = dict(extra_body or {})
        self._in_flight = dict.fromkeys(self.urls, 0)
        self._rr = itertools.count()
        self._sem = asyncio.Semaphore(max_in_flight)
        self._model_lock = asyncio.Lock()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout_s)

    def _pick(self, exclude: str | None = None) -> str:
        candidates = [u for u in self.urls if u != exclude] or self.urls
        low = min(self._in_flight[u] for u in candidates)
        tied = [u for u in candidates if self._in_flight[u] == low]
        return tied[next(self._rr) % len(tied)]

    async def _model_name(self) -> str:
        """The configured model, or the first one the server lists (asked once)."""
        if self.model:
            return self.model
        async with self._model_lock:
            if not self.model:
                data = await self._request("GET", "/models", None)
                try:
                    self.model = data["data"][0]["id"]
                except (KeyError, IndexError, TypeError) as exc:
                    raise GuardFailure("guard server lists no model at /v1/models") from exc
        return self.model

    async def generate(self, prompt: Prompt, max_tokens: int) -> Generation:
        body: dict[str, Any] = {
            "model": await self._model_name(),
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            **self.extra_body,
        }
        if self.endpoint == "chat":
            body["messages"] = list(prompt.messages)
            data = await self._request("POST", "/chat/completions", body)
        else:
            body["prompt"] = self.completion_template.replace("{prompt}", prompt.text)
            data = await self._request("POST", "/completions", body)
        return _read_choice(data, self.endpoint)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        async with self._sem:
            url = self._pick()
            for attempt in (0, 1):
                try:
                    resp = await self._send(url, method, path, body)
                    break
                except httpx.TimeoutException as exc:
                    raise GuardFailure(f"guard server {url} timed out after {self.timeout_s:g}s") from exc
                except httpx.TransportError as exc:
                    if attempt == 0 and len(self.urls) > 1:
                        url = self._pick(exclude=url)
                        continue
                    raise GuardFailure(f"guard server {url} unreachable: {exc!r}") from exc
        if resp.status_code != 200:
            raise GuardFailure(f"guard server {url} answered HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            return resp.json()
        except ValueError as exc:
            raise GuardFailure(f"guard server {url} answered non-JSON") from exc

    async def _send(self, url: str, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        self._in_flight[url] += 1
        try:
            return await self._client.request(method, url + path, json=body, timeout=self.timeout_s)
        finally:
            self._in_flight[url] -= 1

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _api_base(url: str) -> str:
    """Accept `http://host:8000`, `.../v1` or `.../v1/`; always talk to `.../v1`."""
    url = url.strip().rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _read_choice(data: Any, endpoint: str) -> Generation:
    try:
        choice = data["choices"][0]
        if endpoint == "chat":
            message = choice["message"]
            text = message.get("content") or ""
            thought = message.get("reasoning") or message.get("reasoning_content")
            if thought and "<think>" not in text:
                text = f"<think>{thought}</think>{text}"
        else:
            text = choice["text"] or ""
        finish = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise GuardFailure("guard server answered without choices[0]") from exc
    return Generation(text=text, finished=finish != "length")
