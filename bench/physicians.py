"""Simulated physicians driven by the fake Bot API itself, in a child process (so it does not share the bot's CPU).

The child runs `tests.fake_bot_api.FakeBotApi` and a `Driver`: each physician sends /start, then taps the next
button of a fixed persona as soon as the bot's reply to the previous tap arrives. Timing is on the child's clock:
the round trip of a step runs from the update being handed out by getUpdates to the reply arriving, and the tap
latency from the tap being queued (the physician's view, including the wait for the next getUpdates).

A step's reply is the bot's sendMessage with a keyboard (the next question, or the roadmap at the end); for a
toggle on a multi-choice question it is the editMessageText that redraws the keyboard.

Protocol on stdin/stdout, one JSON object a line: the child prints its address; the parent sends
{"physicians": N, "first_id": ID, "concurrency": C, "timeout": S} and gets a report back when every physician
finished (or the timeout passed); an empty line ends the child.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.child import ChildFake

PERSONA: list[str | tuple[str, ...]] = [
    "md", "active", ("none",), "certified", "established", "third_plus", "ortho", "predictable", "10to20",
    "high", "yes", "comfortable", "yes", ("wc",),
]  # fmt: skip
"""The answers of the persona the physicians take (14 questions; two are multi-choice)."""
TAPS = ["MD", "Yes, active", "None", "Done", "Board certified", "Established", "At least a third",
        "Orthopedics", "Predictable", "10-20", "High tolerance", "Yes", "Comfortable", "Yes", "Workers' compensation",
        "Done"]  # fmt: skip
"""The button labels the persona taps, in order."""
TOGGLES = frozenset({2, 14})
"""Indexes in TAPS of taps that toggle an option of a multi-choice question (answered by an edit, not a send)."""
UPDATES_PER_PHYSICIAN = 1 + len(TAPS)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile by the nearest-rank method (0.0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class _Physician:
    user_id: int
    step: int = -1  # -1: /start sent; i >= 0: TAPS[i] tapped
    update_id: int = 0
    queued_at: float = 0.0
    done: bool = False


@dataclass
class Driver:
    """Physicians answering the next question as soon as the previous reply arrives."""

    fake: Any  # tests.fake_bot_api.FakeBotApi, imported in the child only
    first_id: int
    count: int
    concurrency: int
    round_trips: list[float] = field(default_factory=list)
    tap_latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_tap_at: float = 0.0
    last_reply_at: float = 0.0
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._by_update: dict[int, _Physician] = {}
        self._handed: dict[int, float] = {}
        self._physicians: dict[int, _Physician] = {}
        self._next = 0
        self._done = 0
        self.fake.on_handed_out = self._handed_out
        self.fake.on_call = self._on_call

    def start(self) -> None:
        self.first_tap_at = time.monotonic()
        for _ in range(min(self.concurrency, self.count)):
            self._begin_next()

    def _begin_next(self) -> None:
        if self._next >= self.count:
            return
        user_id = self.first_id + self._next
        self._next += 1
        user = self.fake.user(user_id, first_name="Dana")
        physician = _Physician(user_id)
        self._physicians[user_id] = physician
        self._queued(physician, user.send("/start"))

    def _queued(self, physician: _Physician, update_id: int) -> None:
        physician.update_id = update_id
        physician.queued_at = time.monotonic()
        self._by_update[update_id] = physician

    def _handed_out(self, batch: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for update in batch:
            self._handed.setdefault(int(update["update_id"]), now)

    def _on_call(self, call: Any) -> None:
        method = call.method.lower()
        if method == "getupdates":
            return
        physician = self._physicians.get(call.chat_id) if call.chat_id is not None else None
        if call.status != 200:
            description = (call.response or {}).get("description")
            self.errors.append(f"{call.method} chat {call.chat_id}: {call.status} {description}")
        if physician is None or physician.done or method not in {"sendmessage", "editmessagetext"}:
            return
        if not call.params.get("reply_markup"):
            return
        toggle = physician.step in TOGGLES
        if (method == "editmessagetext") != toggle:
            return
        self._step_done(physician, call.at)

    def _step_done(self, physician: _Physician, at: float) -> None:
        handed = self._handed.pop(physician.update_id, None)
        self._by_update.pop(physician.update_id, None)
        if handed is None:
            self.errors.append(f"reply to chat {physician.user_id} before its update was handed out")
        elif physician.step >= 0:  # /start is not a flow step
            self.round_trips.append(at - handed)
            self.tap_latencies.append(at - physician.queued_at)
        self.last_reply_at = at
        physician.step += 1
        if physician.step >= len(TAPS):
            physician.done = True
            self._done += 1
            if self._done >= self.count:
                self.finished.set()
            else:
                self._begin_next()
            return
        user = self.fake._users[physician.user_id]
        self._queued(physician, user.press(TAPS[physician.step]))

    def report(self) -> dict[str, Any]:
        steps = [p.step for p in self._physicians.values() if not p.done]
        return {
            "completed": self._done,
            "stuck": [[p.user_id, p.step] for p in self._physicians.values() if not p.done][:10],
            "stuck_count": len(steps),
            "round_trips": self.round_trips,
            "tap_latencies": self.tap_latencies,
            "updates": self._done * UPDATES_PER_PHYSICIAN + sum(s + 2 for s in steps),
            "elapsed": self.last_reply_at - self.first_tap_at,
            "errors": self.errors[:20],
            "error_count": len(self.errors),
        }


async def serve() -> None:
    """The child: the fake Bot API (no flood limits) and a driver per request read from stdin."""
    from tests.fake_bot_api import FakeBotApi

    async with FakeBotApi() as fake:
        print(json.dumps({"base_url": fake.base_url, "token": fake.token}), flush=True)
        loop = asyncio.get_running_loop()
        while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            ask = json.loads(line)
            driver = Driver(fake, ask["first_id"], ask["physicians"], ask["concurrency"])
            driver.start()
            try:
                await asyncio.wait_for(driver.finished.wait(), ask["timeout"])
            except TimeoutError:
                driver.errors.append(f"timed out after {ask['timeout']} s")
            fake.on_call = fake.on_handed_out = None
            print(json.dumps(driver.report()), flush=True)


class FakeProcess(ChildFake):
    """The parent's handle on the child: `address` once started, `run(...)` for one batch of physicians."""

    def __init__(self) -> None:
        super().__init__("bench.physicians")

    async def run(self, physicians: int, first_id: int, concurrency: int, within: float) -> dict[str, Any]:
        """Let `physicians` physicians (at most `concurrency` at a time) complete the flow; their report."""
        ask = {"physicians": physicians, "first_id": first_id, "concurrency": concurrency, "timeout": within}
        return await self.ask(json.dumps(ask).encode() + b"\n")


if __name__ == "__main__":
    asyncio.run(serve())
