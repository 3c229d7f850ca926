"""A scripted model guard for pipeline and app tests (the real ones have their own tests).

It flags policy `X` when the judged text contains `VIOLATE:X`; raises when it contains
`GUARD_CRASH`; sleeps 10 s on `GUARD_SLOW`; leaves every policy out of its verdict on
`GUARD_PARTIAL` (an unreadable reply); waits `delay` seconds (constructor) before every verdict,
and 0.5 s when the text contains `GUARD_DELAY`. `active` counts checks in flight.
"""

from __future__ import annotations

import asyncio

from guard.errors import GuardFailure
from guard.verdict import CheckRequest, PolicyResult, Verdict


class ScriptedGuard:
    name = "scripted"

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[CheckRequest] = []
        self.closed = False
        self.delay = delay
        self.active = 0

    async def check(self, request: CheckRequest) -> Verdict:
        self.active += 1
        try:
            return await self._check(request)
        finally:
            self.active -= 1

    async def _check(self, request: CheckRequest) -> Verdict:
        self.calls.append(request)
        text = request.content
        if self.delay or "GUARD_DELAY" in text:
            await asyncio.sleep(self.delay or 0.5)
        if "GUARD_CRASH" in text:
            raise GuardFailure("the guard model returned an unreadable answer")
        if "GUARD_SLOW" in text:
            await asyncio.sleep(10)
        if "GUARD_PARTIAL" in text:
            return Verdict(self.name, {}, reasoning="???")
        results = {
            p.id: PolicyResult(p.id, f"VIOLATE:{p.id}" in text, 1.0 if f"VIOLATE:{p.id}" in text else 0.0)
            for p in request.policies
        }
        reasoning = "scripted: " + (", ".join(k for k, r in results.items() if r.violated) or "nothing")
        return Verdict(self.name, results, reasoning=reasoning, decided_by=self.name)

    async def aclose(self) -> None:
        self.closed = True
