"""What the dialogue asks a transport to show: messages with inline keyboards, notices and files."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Button:
    label: str
    data: str


Keyboard = tuple[tuple[Button, ...], ...]


@dataclass(frozen=True)
class Screen:
    """One message: HTML text and an inline keyboard."""

    text: str
    keyboard: Keyboard = ()

    def buttons(self) -> list[Button]:
        return [b for row in self.keyboard for b in row]


@dataclass(frozen=True)
class Document:
    """A file to hand over: Telegram sends it as a document, the console writes it to the working directory."""

    filename: str
    content: bytes
    caption: str = ""


@dataclass
class Reply:
    """What to show: a short notice (a callback toast), a replacement for the pressed message, new messages."""

    notice: str | None = None
    edit: Screen | None = None
    send: list[Screen] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)

    def screens(self) -> list[Screen]:
        """Every message shown, in order: the edited one first, then the new ones."""
        return ([self.edit] if self.edit is not None else []) + list(self.send)


PRESSED_MESSAGE: ContextVar[int | None] = ContextVar("pressed_message", default=None)
"""The id of the message whose button is being handled, set by the transport around `Dialogue.press` (None in the
console). A plugin that hands that message to background work reads it: a broadcast's control message becomes the
progress message the sender edits in place."""


def esc(text: str) -> str:
    """Escape text for Telegram's HTML parse mode."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
