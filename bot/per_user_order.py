"""Process updates of different physicians at once, and each physician's own updates one at a time, in order.

PTB handles one update at a time by default, so every physician waits for everyone else's database work and
Bot API calls; its concurrent mode would instead let two taps of the same physician overtake each other. The
per-user lock here keeps each physician's updates in the order Telegram delivered them (asyncio locks are
first come, first served, and PTB starts the updates' tasks in order), while the bound caps the updates in
progress (an update waiting for the same physician's earlier one holds its place: PTB takes the place first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

MAX_CONCURRENT_UPDATES = 64
"""Updates in progress at once; beyond the database pool they queue for a connection, which is cheap."""


class PerUserOrder(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int = MAX_CONCURRENT_UPDATES) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = _key(update)
        if key is None:
            await coroutine
            return
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                await coroutine
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


def _key(update: object) -> int | None:
    """Whose update this is: the user (whose rows the dialogue locks), else the chat."""
    if not isinstance(update, Update):
        return None
    if update.effective_user is not None:
        return update.effective_user.id
    return update.effective_chat.id if update.effective_chat is not None else None
