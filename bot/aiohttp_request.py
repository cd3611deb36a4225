"""PTB's networking backend on aiohttp instead of httpx.

PTB lets an application choose how its requests reach the Bot API (`telegram.request.BaseRequest`); everything
above `do_request` (the rate limiter, building parameters, decoding Telegram's answer and errors) stays PTB's.
Measured against the fake Bot API on this project's 2-core machine, httpx spends about 1.2 ms of CPU on one
`sendMessage` and aiohttp about 0.13 ms: with httpx the bot cannot send 1,000 messages a second at all, and every
reply to a physician costs a millisecond of CPU that the next physician waits for.

Parameters go as one JSON object of the strings PTB would put in a form (the Bot API server reads a JSON body's
string values exactly as form fields): one `json.dumps` where aiohttp's FormData built a multipart writer and
URL-encoded every value, which was about a tenth of the CPU of a broadcast message. Uploads stay multipart.
"""

from __future__ import annotations

import json

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

JSON_BODY = {"Content-Type": "application/json"}


class AiohttpRequest(BaseRequest):
    """One aiohttp session with a bounded connection pool; timeouts as in PTB's `HTTPXRequest`.

    aiohttp has no write timeout of its own: a request is bounded as a whole by the sum of its four timeouts.
    Its `connect` timeout covers waiting for a pooled connection and opening one, so it is pool + connect.
    """

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._timeouts = {"read": read_timeout, "write": write_timeout, "connect": connect_timeout}
        self._timeouts["pool"] = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._timeouts["read"]

    @read_timeout.setter
    def read_timeout(self, seconds: float | None) -> None:
        """Tests shorten the wait for a reply that will never come."""
        self._timeouts["read"] = seconds

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": self.USER_AGENT})

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _timeout(
        self,
        files: bool,
        read: ODVInput[float],
        write: ODVInput[float],
        connect: ODVInput[float],
        pool: ODVInput[float],
    ) -> aiohttp.ClientTimeout:
        def pick(value: ODVInput[float], key: str) -> float | None:
            if isinstance(value, DefaultValue):
                return self._media_write_timeout if key == "write" and files else self._timeouts[key]
            return value

        r, w, c, p = pick(read, "read"), pick(write, "write"), pick(connect, "connect"), pick(pool, "pool")
        parts = (r, w, c, p)
        total = None if any(t is None for t in parts) else sum(t for t in parts if t is not None)
        connect_total = None if c is None or p is None else c + p
        return aiohttp.ClientTimeout(total=total, connect=connect_total, sock_connect=c, sock_read=r)

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data and request_data.contains_files else None
        fields = request_data.json_parameters if request_data else None
        body: aiohttp.FormData | bytes | None = None
        headers = None
        if files:
            form = aiohttp.FormData()
            for name, value in (fields or {}).items():
                form.add_field(name, value)
            for name, (filename, content, mimetype) in files.items():
                form.add_field(name, content, filename=filename, content_type=mimetype)
            body = form
        elif fields:
            body, headers = json.dumps(fields).encode(), JSON_BODY
        timeout = self._timeout(bool(files), read_timeout, write_timeout, connect_timeout, pool_timeout)
        try:
            async with self._session.request(method, url, data=body, headers=headers, timeout=timeout) as response:
                return response.status, await response.read()
        except TimeoutError as err:
            raise TimedOut from err
        except aiohttp.ClientError as err:
            raise NetworkError(f"aiohttp.{err.__class__.__name__}: {err}") from err
