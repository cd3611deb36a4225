"""The steps of the progress tracker, loaded from `flows/data/progress.toml` and validated at load time.

Kept apart from `flows.progress` so that the roadmap can read the step keys (a ticked step reshapes it) without an
import cycle. The keys are fixed here because code reacts to them; labels and wording live in the data file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.definition import DATA_DIR
from flows.recommend import Path

ELIGIBLE = "eligible"
COURSE = "course"
APPLIED = "applied"
PASSED = "passed"
APPOINTED = "appointed"
PANEL = "panel"
IME_SOURCE = "ime_source"
IME_REPORT = "ime_report"
KEYS = (ELIGIBLE, COURSE, APPLIED, PASSED, APPOINTED, PANEL, IME_SOURCE, IME_REPORT)

Track = Literal["qme", "ime"]


class Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    track: Track
    label: str = Field(min_length=1, max_length=60)
    todo: str = Field(min_length=1)
    undated: str = Field(min_length=1)


class Steps(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: tuple[Step, ...]

    @model_validator(mode="after")
    def _known_keys(self) -> Steps:
        keys = [s.key for s in self.steps]
        if sorted(keys) != sorted(KEYS):
            raise ValueError(f"progress steps must be exactly {', '.join(KEYS)}; got {', '.join(keys)}")
        return self

    def get(self, key: str) -> Step | None:
        return next((s for s in self.steps if s.key == key), None)

    def for_path(self, path: Path) -> tuple[Step, ...]:
        """The steps a physician on `path` can tick: QME's, IME's, both for hybrid, none for "not yet"."""
        return tuple(s for s in self.steps if s.track in tracks(path))


def tracks(path: Path) -> tuple[Track, ...]:
    if path is Path.QME:
        return ("qme",)
    if path is Path.IME:
        return ("ime",)
    if path is Path.HYBRID:
        return ("qme", "ime")
    return ()


@cache
def load_steps() -> Steps:
    with (DATA_DIR / "progress.toml").open("rb") as fh:
        return Steps.model_validate(tomllib.load(fh))


def known(keys: Collection[str]) -> frozenset[str]:
    """The keys that name a step (stored rows from an older version of the data are ignored)."""
    return frozenset(keys) & frozenset(KEYS)
