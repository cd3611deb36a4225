"""`medlegal run` as a real process against the fake Bot API: polling, webhook, and clear startup errors."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import aiohttp
import pytest

from tests.cli_runner import COMMAND, clean_env
from tests.fake_bot_api import FakeBotApi


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return clean_env(tmp_path / "run.db", **values)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start(tmp_path: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *COMMAND, "run", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def _stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_run_polls_answers_and_stops_cleanly(fake: FakeBotApi, tmp_path: Path) -> None:
    proc = await _start(
        tmp_path, _env(tmp_path, MEDLEGAL_BOT_TOKEN=fake.token, MEDLEGAL_TELEGRAM_BASE_URL=fake.base_url)
    )
    try:
        await fake.wait_for_call("setMyCommands", timeout=20)
        user = fake.user(42)
        user.send("/start")
        first = await fake.wait_for_message(42, "Step 1 of 14", timeout=10)
        user.press("MD")
        await fake.wait_for_message(42, "Step 2 of 14", after=first.message_id, timeout=10)
    finally:
        code, err = await _stop(proc)
    assert code == 0, err
    assert fake.token not in err, "the token must never reach the logs"
    assert (tmp_path / "run.db").exists()


async def test_run_in_webhook_mode_checks_the_secret(fake: FakeBotApi, tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    env = _env(
        tmp_path,
        MEDLEGAL_BOT_TOKEN=fake.token,
        MEDLEGAL_TELEGRAM_BASE_URL=fake.base_url,
        MEDLEGAL_WEBHOOK_URL=url,
        MEDLEGAL_WEBHOOK_SECRET="s3cret-token",
        MEDLEGAL_WEBHOOK_LISTEN=f"127.0.0.1:{port}",
    )
    proc = await _start(tmp_path, env)
    try:
        await fake.wait_for_call("setWebhook", timeout=20)
        assert fake.webhook is not None and fake.webhook["url"] == url
        assert fake.webhook["secret_token"] == "s3cret-token"
        user = fake.user(43)
        user.send("/start")
        await fake.wait_for_message(43, "Step 1 of 14", timeout=10)
        update = {
            "update_id": 999_001,
            "message": {
                "message_id": 1,
                "date": 0,
                "text": "/start",
                "chat": {"id": 44, "type": "private", "first_name": "X"},
                "from": {"id": 44, "is_bot": False, "first_name": "X"},
            },
        }
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                async with http.post(url, json=update, headers=headers) as response:
                    assert response.status == 403
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok", "database": "up", "reminder_scheduler": "active"}
        await asyncio.sleep(0.3)
        assert fake.messages(44) == []
    finally:
        code, err = await _stop(proc)
    assert code == 0, err


@pytest.mark.parametrize(
    ("token", "base", "expected"),
    [
        ("123456:wrong-token", "fake", "Telegram rejected MEDLEGAL_BOT_TOKEN"),
        ("123456:TEST-token", "closed", "cannot reach the Telegram Bot API"),
    ],
)
async def test_run_with_a_bad_token_or_unreachable_telegram_says_one_line(
    fake: FakeBotApi, tmp_path: Path, token: str, base: str, expected: str
) -> None:
    base_url = fake.base_url if base == "fake" else f"http://127.0.0.1:{_free_port()}/bot"
    env = _env(tmp_path, MEDLEGAL_BOT_TOKEN=token, MEDLEGAL_TELEGRAM_BASE_URL=base_url, MEDLEGAL_LOG_FORMAT="text")
    proc = await _start(tmp_path, env)
    _, err_bytes = await asyncio.wait_for(proc.communicate(), 60)
    err = err_bytes.decode()
    assert proc.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert expected in last and last.startswith("medlegal: ")
    assert "Traceback" not in err
