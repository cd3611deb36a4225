"""`medlegal chat`: the same dialogue in a terminal, with no token and no network.

Buttons are printed numbered; a line may be a number, several numbers for a multi-choice question
("1,3"), an option's label, a /command, or free text, exactly like a Telegram message would be.
"""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from typing import TextIO

from bot.dialogue import Button, Dialogue, Reply, Screen, parse_press
from bot.polls import poll_selection
from bot.settings import Settings
from bot.wiring import build_dialogue
from db import migrate
from db.engine import make_engine, make_session_factory

DEFAULT_USER_ID = 1
_TAG = re.compile(r"<[^>]+>")
_MARKS = re.compile(r"^[^\w]+")


def plain(text: str) -> str:
    """Telegram HTML to terminal text."""
    return html.unescape(_TAG.sub("", text))


def _label_key(label: str) -> str:
    return _MARKS.sub("", label).strip().casefold()


class ConsoleChat:
    def __init__(self, dialogue: Dialogue, user_id: int, out: TextIO, files_dir: Path | None = None) -> None:
        self.dialogue = dialogue
        self.files_dir = files_dir or Path.cwd()
        self.user_id = user_id
        self.out = out
        self.buttons: list[Button] = []

    def _print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _show_screen(self, screen: Screen) -> None:
        self._print(plain(screen.text))
        buttons = screen.buttons()
        if buttons:
            self.buttons = buttons
            width = len(str(len(buttons)))
            for number, button in enumerate(buttons, 1):
                self._print(f"  {number:>{width}}) {button.label}")
            if any(b.data.startswith(("t:", "pq:t:")) for b in buttons):
                self._print("  (type the numbers of all that apply, separated by commas)")
        self._print()

    def show(self, reply: Reply) -> None:
        screens = reply.screens()
        if reply.notice and not any(reply.notice in screen.text for screen in screens):
            self._print(f"({reply.notice})")
        if reply.edit is not None:
            self._show_screen(reply.edit)
        for screen in reply.send:
            self._show_screen(screen)
        for document in reply.documents:
            path = self.files_dir / document.filename
            path.write_bytes(document.content)
            self._print(f"{document.caption}\nSaved to {path.resolve()}\n")

    async def handle(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        if line.startswith("/"):
            name, _, args = line[1:].partition(" ")
            self.show(await self.dialogue.command(self.user_id, name, args))
            return
        data = self._button_data(line)
        if data is not None:
            self.show(await self.dialogue.press(self.user_id, data))
        else:
            self.show(await self.dialogue.text(self.user_id, line))

    def _button_data(self, line: str) -> str | None:
        """Map numbers or a label to the callback data of the buttons on screen."""
        numbers = [p for p in re.split(r"[,\s]+", line) if p]
        if numbers and all(p.isdigit() for p in numbers):
            picked = [self.buttons[int(p) - 1] for p in numbers if 0 < int(p) <= len(self.buttons)]
            if len(picked) != len(numbers):
                return "?"  # out of range: the dialogue answers it like an unknown button
            if len(picked) > 1 and all(b.data.startswith("pq:t:") for b in picked):
                return poll_selection(picked, self.buttons)
            toggles = [parse_press(b.data) for b in picked]
            if all(t is not None and t.verb == "t" for t in toggles):
                first = toggles[0]
                assert first is not None
                options = "+".join(t.args[1] for t in toggles if t is not None)
                return f"m:{first.turn}:{first.args[0]}:{options}"
            return picked[0].data if len(picked) == 1 else "?"
        wanted = _label_key(line)
        for button in self.buttons:
            if _label_key(button.label) == wanted and not button.data.startswith("t:"):
                return button.data
        return None


async def run_console(settings: Settings, user_id: int, stdin: TextIO, out: TextIO) -> None:
    engine = make_engine(settings.database_url)
    try:
        await migrate.upgrade(engine)
        chat = ConsoleChat(build_dialogue(settings, make_session_factory(engine)), user_id, out)
        chat.show(await chat.dialogue.command(user_id, "start"))
        interactive = stdin.isatty()
        while True:
            if interactive:
                out.write("> ")
                out.flush()
            line = await asyncio.to_thread(stdin.readline)
            if line == "":
                break
            await chat.handle(line)
        if interactive:
            out.write("\n")
    finally:
        await engine.dispose()
