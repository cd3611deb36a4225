"""Community polls as data: the model, loading from TOML or YAML, the admins' chat format, and the peer figures.

Everything here is pure: the database keeps polls and answers (db.polls), the bot shows them (bot.polls). The peer
figure rule lives here so that the chat and any later export suppress small counts the same way.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DATA = Path(__file__).resolve().parent / "data" / "polls.toml"
KEY_PATTERN = r"^[a-z0-9_]{1,32}$"
MAX_OPTIONS = 12
"""Buttons on one message stay readable, and a multi-choice selection fits a small bitmask in callback data."""
K_FLOOR = 3


class PollOption(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    key: str = Field(pattern=KEY_PATTERN)
    label: str = Field(min_length=1, max_length=60)


class Poll(BaseModel):
    """One poll: options in the order shown; single choice (one tap) or multiple (toggles, then Done)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    key: str = Field(pattern=KEY_PATTERN)
    question: str = Field(min_length=3, max_length=300)
    options: tuple[PollOption, ...] = Field(min_length=2, max_length=MAX_OPTIONS)
    choice: Literal["single", "multiple"] = "single"
    status: Literal["open", "closed"] = "open"
    opens: date | None = None
    closes: date | None = None
    """Both days included; None: no limit on that side."""

    @field_validator("options")
    @classmethod
    def _distinct(cls, options: tuple[PollOption, ...]) -> tuple[PollOption, ...]:
        for what, values in (("key", [o.key for o in options]), ("label", [o.label.casefold() for o in options])):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"option {what}s must differ; repeated: {', '.join(repeated)}")
        return options

    @model_validator(mode="after")
    def _dates_in_order(self) -> Poll:
        if self.opens and self.closes and self.closes < self.opens:
            raise ValueError(f"closes ({self.closes}) is before opens ({self.opens})")
        return self

    @property
    def multi(self) -> bool:
        return self.choice == "multiple"

    def is_open(self, today: date) -> bool:
        """Answerable today: not closed, and today within the dates."""
        if self.status != "open":
            return False
        return (self.opens is None or self.opens <= today) and (self.closes is None or today <= self.closes)

    def label_of(self, key: str) -> str:
        return next((o.label for o in self.options if o.key == key), key)

    def option_keys(self) -> tuple[str, ...]:
        return tuple(o.key for o in self.options)


class PollFileError(ValueError):
    """A poll file that cannot be used; the message names the file, the poll and the field, in one line."""


def _problems(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _entries(data: Any, name: str) -> list[Any]:
    """The polls in a parsed file: a `poll` list of tables, or one poll at the top level."""
    if isinstance(data, dict) and "poll" in data:
        entries = data["poll"]
        if isinstance(entries, dict):
            entries = [entries]
        if not isinstance(entries, list) or not entries:
            raise PollFileError(f"{name}: `poll` must be a list of polls")
        return entries
    if isinstance(data, dict) and data:
        return [data]
    raise PollFileError(f"{name}: no poll found (expected [[poll]] tables, or one poll's fields at the top level)")


def parse_polls(text: str, fmt: Literal["toml", "yaml"], name: str = "poll file") -> list[Poll]:
    """Polls from TOML or YAML text; PollFileError says what is wrong and where."""
    try:
        data = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    except tomllib.TOMLDecodeError as exc:
        raise PollFileError(f"{name}: not valid TOML: {exc}") from None
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise PollFileError(f"{name}: not valid YAML: {detail}") from None
    polls = []
    for number, entry in enumerate(_entries(data, name), 1):
        label = f"poll {number}"
        if isinstance(entry, dict) and isinstance(entry.get("key"), str):
            label += f" ({entry['key']})"
        if not isinstance(entry, dict):
            raise PollFileError(f"{name}: {label} is not a table of fields")
        try:
            polls.append(Poll.model_validate(entry))
        except ValidationError as exc:
            raise PollFileError(f"{name}: {label}: {_problems(exc)}") from None
    keys = [p.key for p in polls]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise PollFileError(f"{name}: poll keys must differ; repeated: {', '.join(repeated)}")
    return polls


def load_polls(path: Path) -> list[Poll]:
    """Polls from a .toml, .yaml or .yml file."""
    suffix = path.suffix.lower()
    if suffix not in {".toml", ".yaml", ".yml"}:
        raise PollFileError(f"{path.name}: a poll file ends in .toml, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PollFileError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_polls(text, "toml" if suffix == ".toml" else "yaml", path.name)


def seed_polls() -> list[Poll]:
    """The polls the bot starts with (flows/data/polls.toml)."""
    return load_polls(DATA)


# -- the admins' chat format -------------------------------------------------------------------------------
_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str, limit: int = 32) -> str:
    """Letters and digits joined by _, at most `limit` characters: a key derived from a label or a question."""
    return _SLUG.sub("_", text.casefold()).strip("_")[:limit].strip("_")


def unique_key(base: str, taken: Iterable[str], limit: int = 32) -> str:
    """`base`, or `base_2`, `base_3`, ... when it is taken (all within `limit` characters)."""
    used = set(taken)
    base = base or "poll"
    if base not in used:
        return base
    n = 2
    while True:
        candidate = f"{base[: limit - len(str(n)) - 1]}_{n}"
        if candidate not in used:
            return candidate
        n += 1


def parse_poll_text(text: str, taken_keys: Iterable[str] = ()) -> Poll:
    """A poll from the admins' chat format: the question, then one option a line (a line `multiple` or `single`
    sets the choice), or all of it on one line separated by |. Keys come from the question and the labels;
    ValueError says what is unusable."""
    raw = text.strip().splitlines()
    if len(raw) == 1 and "|" in raw[0]:  # all on one line: Question? | Option | Option [| multiple]
        raw = raw[0].split("|")
    lines = [line.strip().lstrip("-•*").strip() for line in raw]
    lines = [line for line in lines if line]
    choice: Literal["single", "multiple"] = "single"
    kept = []
    for line in lines:
        word = line.casefold().rstrip(".")
        if word in {"multiple", "multi", "multiple choice"}:
            choice = "multiple"
        elif word in {"single", "single choice"}:
            choice = "single"
        else:
            kept.append(line)
    if len(kept) < 3:
        raise ValueError("a poll needs a question and at least two options, one per line")
    question, labels = kept[0], kept[1:]
    words = slug(question).split("_")
    key = unique_key(slug("_".join(words[:5]), 28), taken_keys)
    options = []
    keys: list[str] = []
    for number, label in enumerate(labels, 1):
        option_key = unique_key(slug(label, 24) or f"o{number}", keys, 24)
        keys.append(option_key)
        options.append({"key": option_key, "label": label})
    try:
        return Poll.model_validate({"key": key, "question": question, "options": options, "choice": choice})
    except ValidationError as exc:
        raise ValueError(_problems(exc)) from None


# -- multi-choice selections in callback data -----------------------------------------------------------------
def to_mask(poll: Poll, chosen: Iterable[str]) -> int:
    chosen = set(chosen)
    return sum(1 << i for i, key in enumerate(poll.option_keys()) if key in chosen)


def from_mask(poll: Poll, mask: int) -> tuple[str, ...]:
    """The option keys in a selection bitmask, in the poll's order; bits past the options are ignored."""
    return tuple(key for i, key in enumerate(poll.option_keys()) if mask >> i & 1)


# -- peer figures -------------------------------------------------------------------------------------------
def effective_k(k: int) -> int:
    """The smallest count shown; never below K_FLOOR whatever is configured."""
    return max(k, K_FLOOR)


@dataclass(frozen=True)
class Cell:
    """One option's published figure: count and share, or withheld (below k, or to protect a cell below k)."""

    key: str
    label: str
    count: int | None
    share: float | None
    below_k: bool

    def shown(self, k: int) -> str:
        if self.count is None:
            return f"<{k}" if self.below_k else "withheld"
        return f"{self.share:.0%}" if self.share is not None else str(self.count)


@dataclass(frozen=True)
class PeerFigures:
    respondents: int
    cells: tuple[Cell, ...]
    withheld: bool
    """Fewer than k respondents: nothing but that fact is published."""


def peer_figures(poll: Poll, counts: Mapping[str, int], respondents: int, k: int) -> PeerFigures:
    """The figures a physician may see: counts below k become "<k" with no share.

    Single choice: the counts add up to the respondents, so one hidden cell could be recovered by subtraction;
    then the next smallest cell is withheld too (complementary suppression). Multiple-choice counts do not add up
    to anything published, so each is judged alone.
    """
    k = effective_k(k)
    if respondents < k:
        return PeerFigures(respondents, (), True)
    raw = [(o.key, o.label, counts.get(o.key, 0)) for o in poll.options]
    hidden = {key for key, _, n in raw if n < k}
    if not poll.multi and len(hidden) == 1:
        visible = sorted(((n, i, key) for i, (key, _, n) in enumerate(raw) if key not in hidden))
        if visible:
            hidden.add(visible[0][2])
    cells = tuple(
        Cell(key, label, None, None, n < k) if key in hidden else Cell(key, label, n, n / respondents, False)
        for key, label, n in raw
    )
    return PeerFigures(respondents, cells, False)
