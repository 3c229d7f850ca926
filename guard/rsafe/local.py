"""The `transformers` engine: a small guard model in-process (CPU or GPU).

Generation runs on one worker thread, never on the event loop. Concurrent
checks are gathered into batches there: the worker takes everything queued
(up to `batch_size`), groups it by token budget, and runs one left-padded
`generate` per group. That is the in-process analogue of vLLM's batching and
what makes concurrent checks cheaper than sequential ones.

Greedy decoding; a generation that did not emit EOS within its budget is
reported as unfinished (the parser then refuses it as truncated).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.errors import GuardConfigError, GuardFailure
from guard.rsafe.engines import Generation, Prompt


@dataclass(slots=True)
class _Job:
    prompt: Prompt
    max_tokens: int
    future: Future[Generation]


_STOP = object()


class TransformersEngine:
    name = "transformers"

    def __init__(
        self,
        model: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 8,
        threads: int | None = None,
    ) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - torch/transformers are core deps
            raise GuardConfigError(f"the transformers engine needs torch and transformers: {exc}") from exc
        path = Path(model)
        if not path.is_dir():
            raise GuardConfigError(f"transformers engine: model directory {str(path)!r} not found")
        self._torch = torch
        if threads:
            # Process-wide: tiny models decode faster on one thread than on contended cores.
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device).eval()
        self.device = device
        self.batch_size = max(1, batch_size)
        self.use_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="rsafe-transformers", daemon=True)
        self._thread.start()
        self.batches_run = 0  # observable: tests check that concurrent checks shared a batch

    async def generate(self, prompt: Prompt, max_tokens: int) -> Generation:
        if not self._thread.is_alive():
            raise GuardFailure("transformers engine is closed")
        job = _Job(prompt, max_tokens, Future())
        self._queue.put(job)
        return await asyncio.wrap_future(job.future)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs = [first]
            while len(jobs) < self.batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(_STOP)
                    break
                jobs.append(nxt)
            groups: dict[int, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.max_tokens, []).append(job)
            for max_tokens, group in groups.items():
                live = [j for j in group if j.future.set_running_or_notify_cancel()]
                if not live:
                    continue
                try:
                    outs = self._generate([j.prompt for j in live], max_tokens)
                except Exception as exc:  # noqa: BLE001 - any model crash is a failed check
                    for j in live:
                        j.future.set_exception(GuardFailure(f"transformers generation failed: {exc!r}"))
                    continue
                for j, out in zip(live, outs, strict=True):
                    j.future.set_result(out)

    def _render(self, prompt: Prompt) -> str:
        if self.use_chat_template:
            return self.tokenizer.apply_chat_template(list(prompt.messages), tokenize=False, add_generation_prompt=True)
        return prompt.text

    def _generate(self, prompts: list[Prompt], max_tokens: int) -> list[Generation]:
        torch = self._torch
        texts = [self._render(p) for p in prompts]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        eos = self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=eos,
            )
        self.batches_run += 1
        new = out[:, enc["input_ids"].shape[1] :]
        results = []
        for row in new.tolist():
            finished = eos in row
            if finished:
                row = row[: row.index(eos)]
            results.append(Generation(self.tokenizer.decode(row, skip_special_tokens=True), finished))
        return results

    async def aclose(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join, 30)
