"""Telegram's HTML parse mode, checked before a broadcast is queued.

Telegram rejects a malformed message only when it is sent, which for a broadcast would be thousands of failed
rows; so an admin's text is checked here first and every problem is named in words an admin can act on. The
rules are those of the Bot API's "HTML style" (core.telegram.org/bots/api#html-style), slightly stricter where
Telegram would silently show something the admin did not mean (an unknown entity such as `&nbsp;`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LENGTH = 4096
"""Telegram's limit on a message's text after the tags are parsed, in UTF-16 code units as Telegram counts."""
MAX_PROBLEMS = 5

ALLOWED = (
    'b, strong, i, em, u, ins, s, strike, del, a href, code, pre, span class="tg-spoiler", tg-spoiler, '
    "blockquote, tg-emoji"
)
_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "span", "tg-spoiler"}
    | {"blockquote", "tg-emoji"}
)
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[^\s<>=/\"']+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s<>\"']+))?)*)\s*(/?)>"
)
_ATTR = re.compile(r"([^\s<>=/\"']+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s<>\"']+)))?")
_ENTITY = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9A-Fa-f]{1,7})|([A-Za-z][A-Za-z0-9]{0,31}));")


@dataclass(frozen=True)
class _Open:
    name: str
    at: int
    attrs: dict[str, str]


class _Checker:
    """One pass over the text: tags on a stack, entities decoded, the rendered text collected."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.multiline = "\n" in text
        self.problems: list[str] = []
        self.stack: list[_Open] = []
        self.plain: list[str] = []

    def problem(self, message: str, at: int) -> None:
        if self.multiline:
            message += f" (line {self.text.count(chr(10), 0, at) + 1})"
        if message not in self.problems:
            self.problems.append(message)

    def run(self) -> None:
        text, i, n = self.text, 0, len(self.text)
        while i < n:
            lt, amp = text.find("<", i), text.find("&", i)
            nxt = min(p for p in (lt, amp, n) if p >= 0)
            self.plain.append(text[i:nxt])
            i = nxt
            if i >= n:
                break
            i = self.entity(i) if text[i] == "&" else self.tag(i)
        for opened in reversed(self.stack):
            self.problem(f"unclosed <{opened.name}> tag", opened.at)

    def entity(self, i: int) -> int:
        match = _ENTITY.match(self.text, i)
        if match is None:  # "Q&A": Telegram shows a lone ampersand as it is
            self.plain.append("&")
            return i + 1
        decimal, hexadecimal, name = match.groups()
        if name is not None:
            if name not in _NAMED:
                known = "use &lt; &gt; &amp; &quot; or a numeric one like &#8212;"
                self.problem(f"&{name}; is not an entity Telegram knows; {known}", i)
            self.plain.append(_NAMED.get(name, match.group(0)))
            return match.end()
        code = int(decimal) if decimal is not None else int(hexadecimal, 16)
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            self.problem(f"{match.group(0)} is not a character", i)
            self.plain.append("?")
        else:
            self.plain.append(chr(code))
        return match.end()

    def tag(self, i: int) -> int:
        text = self.text
        if text.startswith("<!--", i):
            self.problem("HTML comments are not allowed", i)
            end = text.find("-->", i)
            return len(text) if end < 0 else end + 3
        match = _TAG.match(text, i)
        if match is None:
            self.problem("a bare < : write &lt; for a literal <, or finish the tag", i)
            self.plain.append("<")
            return i + 1
        closing, name, raw_attrs, self_closing = (
            match.group(1) == "/",
            match.group(2).lower(),
            match.group(3),
            match.group(4),
        )
        if name not in _TAGS:
            self.problem(f"<{name}> is not a tag Telegram allows (allowed: {ALLOWED})", i)
            return match.end()
        if closing:
            self.close(name, i)
            return match.end()
        if self_closing:
            self.problem(f"<{name}/> is not allowed: write <{name}>…</{name}>", i)
            return match.end()
        attrs: dict[str, str] = {}
        for attr in _ATTR.finditer(raw_attrs):
            value = next((v for v in attr.groups()[1:] if v is not None), "")
            attrs[attr.group(1).lower()] = value
        self.open(_Open(name, i, attrs))
        return match.end()

    def open(self, tag: _Open) -> None:
        name, attrs = tag.name, tag.attrs
        if name == "span" and attrs.get("class") != "tg-spoiler":
            self.problem('<span> is allowed only as <span class="tg-spoiler">', tag.at)
        if name == "a" and not attrs.get("href", "").strip():
            self.problem('<a> needs a link: <a href="https://…">text</a>', tag.at)
        if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
            self.problem('<tg-emoji> needs a numeric emoji-id: <tg-emoji emoji-id="…">👍</tg-emoji>', tag.at)
        inside = self.stack[-1].name if self.stack else None
        in_pre_code = name == "code" and inside == "pre"
        if inside in {"code", "pre"} and not in_pre_code:
            self.problem(f"<{name}> inside <{inside}>: code and pre cannot hold other formatting", tag.at)
        if name == "blockquote" and any(t.name == "blockquote" for t in self.stack):
            self.problem("a <blockquote> inside another <blockquote> is not allowed", tag.at)
        if name == "a" and any(t.name == "a" for t in self.stack):
            self.problem("a link inside another link is not allowed", tag.at)
        self.stack.append(tag)

    def close(self, name: str, at: int) -> None:
        if self.stack and self.stack[-1].name == name:
            self.stack.pop()
            return
        depth = next((k for k in range(len(self.stack) - 1, -1, -1) if self.stack[k].name == name), None)
        if depth is None:
            self.problem(f"</{name}> has no opening <{name}> tag", at)
            return
        inner = self.stack[-1].name
        self.problem(f"</{name}> closes <{name}> while <{inner}> inside it is still open: close <{inner}> first", at)
        del self.stack[depth:]


def _check(text: str) -> _Checker:
    checker = _Checker(text)
    checker.run()
    return checker


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units: most emoji count twice)."""
    return len(text.encode("utf-16-le")) // 2


def html_problems(text: str) -> list[str]:
    """What Telegram would reject (or show other than meant) in this HTML message; [] when it can be sent.

    The first few problems are listed, each a short sentence without a full stop.
    """
    checker = _check(text)
    problems = checker.problems
    plain = "".join(checker.plain)
    if not plain.strip():
        problems.append("the message is empty" + (" once the tags are removed" if text.strip() else ""))
    elif utf16_len(plain) > MAX_LENGTH:
        problems.append(
            f"the message is {utf16_len(plain)} characters long without its tags; Telegram allows {MAX_LENGTH}"
        )
    return problems[:MAX_PROBLEMS]


def plain_text(text: str) -> str:
    """The text as Telegram shows it, without tags and with entities decoded (for a terminal preview)."""
    return "".join(_check(text).plain)
