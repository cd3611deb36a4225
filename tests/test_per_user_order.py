"""The update processor: physicians are handled at once, each physician's own updates one at a time, in order."""

from __future__ import annotations

import asyncio
from typing import Any

from telegram import Update

from bot.per_user_order import PerUserOrder


def _update(update_id: int, user_id: int) -> Update:
    data: dict[str, Any] = {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 0,
            "chat": {"id": user_id, "type": "private", "first_name": "Dana"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Dana"},
            "text": "hello",
        },
    }
    return Update.de_json(data, None)


async def test_one_physicians_updates_run_in_order_while_others_run_beside_them() -> None:
    processor = PerUserOrder(8)
    order: list[int] = []
    other_ran = asyncio.Event()

    async def handle(update_id: int, wait_for_other: bool = False) -> None:
        if wait_for_other:  # the first update of physician 1 only ends once physician 2's update has run
            await asyncio.wait_for(other_ran.wait(), 5)
        await asyncio.sleep(0)
        order.append(update_id)
        if update_id == 4:
            other_ran.set()

    tasks = [
        asyncio.create_task(processor.process_update(_update(1, 100), handle(1, wait_for_other=True))),
        asyncio.create_task(processor.process_update(_update(2, 100), handle(2))),
        asyncio.create_task(processor.process_update(_update(3, 100), handle(3))),
        asyncio.create_task(processor.process_update(_update(4, 200), handle(4))),
    ]
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == [4, 1, 2, 3]
    assert processor._locks == {}  # nothing kept for physicians who are done


async def test_a_failing_update_releases_the_physician_for_the_next() -> None:
    processor = PerUserOrder(2)
    done: list[int] = []

    async def fail() -> None:
        raise RuntimeError("handler bug")

    async def ok() -> None:
        done.append(2)

    first = asyncio.create_task(processor.process_update(_update(1, 100), fail()))
    second = asyncio.create_task(processor.process_update(_update(2, 100), ok()))
    results = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), 5)
    assert isinstance(results[0], RuntimeError) and done == [2]
    assert processor._locks == {}


async def test_updates_without_a_user_or_chat_are_not_held() -> None:
    processor = PerUserOrder(2)
    ran: list[str] = []

    async def handle() -> None:
        ran.append("poll")

    await asyncio.wait_for(processor.process_update(Update.de_json({"update_id": 9}, None), handle()), 5)
    assert ran == ["poll"]
