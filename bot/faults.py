"""What the bot does when something fails under a handler: a database blip is retried and then explained to the
physician, and an unexpected exception is reported to the admins without any user data.

A database outage is retried a few times within the update (a restart of PostgreSQL or a dropped connection often
heals in under a second). A transaction that failed committed nothing, so running the whole dialogue step again is
safe; if a commit did land before the connection broke, the repeated press carries an old turn and is answered like a
stale button, so an answer is never applied twice. When the retries run out the physician is told to try again in a
moment, and the question message keeps its buttons, so the same tap works once the database is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from telegram.error import TelegramError

log = logging.getLogger(__name__)
T = TypeVar("T")

DB_RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0)
"""Pauses between attempts of one dialogue step while the database is unreachable (about 2 s in all)."""
REPORT_EVERY = 3600.0
"""Seconds during which an error kind already reported to the admins is only logged."""
_OWN_PACKAGES = ("bot", "db", "flows")


def is_db_outage(exc: BaseException) -> bool:
    """The database could not be reached or dropped the connection (as opposed to a bug in a query)."""
    if isinstance(exc, TelegramError):
        return False
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, PoolTimeout):  # every pooled connection busy for the pool's timeout: a stalled database
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # asyncpg raises OSError (refused) or its own ConnectionDoesNotExistError while connecting or mid-statement
    return isinstance(exc, OSError | ConnectionError) or type(exc).__name__ in {
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "ConnectionFailureError",
    }


async def with_db_retry(step: Callable[[], Awaitable[T]], delays: Iterable[float] | None = None) -> T:
    """Run one dialogue step, again after a short pause while the database is out; other errors go straight up."""
    pauses = list(DB_RETRY_DELAYS if delays is None else delays)
    for attempt in range(len(pauses) + 1):
        try:
            return await step()
        except Exception as exc:
            if not is_db_outage(exc) or attempt == len(pauses):
                raise
            log.warning("database unavailable (%s), attempt %d; retrying", type(exc).__name__, attempt + 1)
            await asyncio.sleep(pauses[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class ErrorKind:
    """An exception reduced to what admins may see: its type and where it was raised, never its message."""

    type: str
    where: str

    @property
    def key(self) -> str:
        """A short stable hash, to match an admin's chat message with the full traceback in the logs."""
        return hashlib.sha256(f"{self.type}@{self.where}".encode()).hexdigest()[:8]


OUTAGE = ErrorKind("database outage", "")
"""The one kind every database outage reports as (`bot.handlers`), however it surfaced."""


def error_kind(exc: BaseException) -> ErrorKind:
    """The exception's type and the innermost frame in this project's code (else the innermost frame at all)."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if _module_of(f.filename).startswith(_OWN_PACKAGES)]
    chosen = own or frames
    where = f"{_module_of(chosen[-1].filename)}.{chosen[-1].name}" if chosen else "unknown"
    return ErrorKind(type(exc).__name__, where)


def _module_of(filename: str) -> str:
    """`.../bot/dialogue.py` -> `bot.dialogue`; outside the project, the file's last two path parts."""
    parts = filename.replace("\\", "/").rsplit(".py", 1)[0].split("/")
    for i in reversed(range(len(parts) - 1)):  # the package nearest the file: /srv/bot/app/db/x.py is db.x
        if parts[i] in _OWN_PACKAGES:
            return ".".join(parts[i:])
    return ".".join(parts[-2:])


class ErrorReporter:
    """Decides which failures reach the admins' chats: each kind at most once per `every` seconds in a process."""

    def __init__(self, every: float = REPORT_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._last: dict[ErrorKind, float] = {}

    def due(self, kind: ErrorKind) -> bool:
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            return False
        self._last[kind] = now
        if len(self._last) > 1000:  # bounded: forget the oldest kinds
            for old in sorted(self._last, key=self._last.__getitem__)[:500]:
                del self._last[old]
        return True

    @staticmethod
    def text(kind: ErrorKind, outage: bool) -> str:
        """The admins' message (plain text): what failed and where, with the hash to find it in the logs."""
        what = "The database is unreachable" if outage else "An update failed"
        return (
            f"⚠️ medlegal: {what}: {kind.type} in {kind.where} (#{kind.key}). "
            f"The physician was asked to try again. Further errors of this kind are only logged for the next hour."
        )
