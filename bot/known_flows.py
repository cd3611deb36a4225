"""The flow this process last saw for each physician, as the unlocked tap's first guess (`bot.dialogue`).

Only a guess: the database stays the truth and settles every order. A tap saved from a guess is a compare-and-set
of the session's turn, and every change to a session bumps its turn or ends it, so a guess that another process (or
the locked way) made stale fails its save and the tap reads the session instead. A good guess saves the read: the
usual tap is then one round trip to the database.
"""

from __future__ import annotations

from collections import OrderedDict

from db.repository import StoredFlow
from flows.engine import FlowState

KNOWN_FLOWS = 10_000
"""Physicians whose latest flow is kept (about a kilobyte each, so 10 MB at most); the least recently seen go
first, and a flow the locked way changes (its last answer, /restart, ...) is dropped."""


class KnownFlows:
    def __init__(self, size: int = KNOWN_FLOWS) -> None:
        self.size = size
        self._flows: OrderedDict[int, tuple[StoredFlow, FlowState]] = OrderedDict()

    def get(self, user_id: int) -> tuple[StoredFlow, FlowState] | None:
        known = self._flows.get(user_id)
        if known is not None:
            self._flows.move_to_end(user_id)
        return known

    def put(self, user_id: int, flow: StoredFlow, state: FlowState) -> None:
        self._flows[user_id] = (flow, state)
        self._flows.move_to_end(user_id)
        if len(self._flows) > self.size:
            self._flows.popitem(last=False)

    def forget(self, user_id: int) -> None:
        self._flows.pop(user_id, None)
