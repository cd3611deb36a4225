"""The admins' funnel: how many physicians are at each progress step, with small counts suppressed.

A physician is counted once per track (QME, IME; a hybrid roadmap is in both), at the first step of that track
they have not ticked, or as having done them all; the track's total is everyone on it. Counts below k are shown
as "<k", and when the hidden cells could be worked out from the shown ones and the total, one more cell is hidden
(complementary suppression), shown as "≥k" so that nothing shown is untrue.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flows.progress_steps import Steps, Track, load_steps, tracks
from flows.recommend import Path

TRACK_TITLES: dict[Track, str] = {
    "qme": "QME track (QME and hybrid roadmaps)",
    "ime": "IME track (IME and hybrid roadmaps)",
}


@dataclass(frozen=True)
class FunnelRow:
    track: Track
    key: str
    """A step key (physicians working on that step), "<track>_done" (all steps done) or "<track>_total"."""
    label: str
    count: int


@dataclass(frozen=True)
class Shown:
    row: FunnelRow
    text: str
    """The count as published: the number, "<k" or (complementary) "≥k"."""


def position(track: Track, ticked: Iterable[str], steps: Steps | None = None) -> str:
    """The first step of the track not ticked yet, or "<track>_done" when all are."""
    done = set(ticked)
    steps = steps or load_steps()
    return next((s.key for s in steps.steps if s.track == track and s.key not in done), f"{track}_done")


def funnel_rows(physicians: Iterable[tuple[str, Iterable[str]]], steps: Steps | None = None) -> list[FunnelRow]:
    """Raw counts (unsuppressed) per track: one row per step, a "done" row and a "total" row.

    `physicians` holds each physician's current path ("qme", "ime", "hybrid", "not_yet") and ticked step keys.
    """
    steps = steps or load_steps()
    counts: dict[str, int] = {}
    totals: dict[Track, int] = {"qme": 0, "ime": 0}
    for path_value, ticked in physicians:
        done = set(ticked)
        for track in tracks(Path(path_value)):
            totals[track] += 1
            at = position(track, done, steps)
            counts[at] = counts.get(at, 0) + 1
    rows: list[FunnelRow] = []
    for track in ("qme", "ime"):
        rows += [FunnelRow(track, s.key, s.label, counts.get(s.key, 0)) for s in steps.steps if s.track == track]
        rows.append(FunnelRow(track, f"{track}_done", "All steps done", counts.get(f"{track}_done", 0)))
        rows.append(FunnelRow(track, f"{track}_total", "Total", totals[track]))
    return rows


def suppress(rows: Sequence[FunnelRow], k: int) -> list[Shown]:
    """Publishable counts, track by track (each track's cells add up to its total)."""
    shown: list[Shown] = []
    for track in ("qme", "ime"):
        part = [r for r in rows if r.track == track]
        shown += _suppress_track(part, k) if part else []
    return shown


def _suppress_track(rows: Sequence[FunnelRow], k: int) -> list[Shown]:
    cells = [r for r in rows if not r.key.endswith("_total")]
    total = next(r for r in rows if r.key.endswith("_total"))
    hidden = {r.key for r in cells if r.count < k}
    complementary: set[str] = set()
    if total.count < k:
        hidden = {r.key for r in cells}  # nothing to protect against: the total itself is withheld
    elif hidden and not _safe([r.count for r in cells if r.key in hidden], k):
        smallest = min((r for r in cells if r.key not in hidden), key=lambda r: r.count, default=None)
        # With every cell hidden already, the total is the one left to blur (it is at least k).
        complementary.add(smallest.key if smallest is not None else total.key)
    out: list[Shown] = []
    for r in rows:
        if r.key in complementary:
            out.append(Shown(r, f"≥{k}"))
        elif r.key in hidden or (r is total and total.count < k):
            out.append(Shown(r, f"<{k}"))
        else:
            out.append(Shown(r, str(r.count)))
    return out


def _safe(hidden: Sequence[int], k: int) -> bool:
    """Whether cells each known to lie in 0..k-1, with their sum known (total minus the shown cells), keep every
    non-zero value unknown: false for a single cell, or when the sum forces every cell to k-1."""
    total = sum(hidden)
    if total == 0:
        return True  # all zero: no physician to single out
    return len(hidden) > 1 and total < len(hidden) * (k - 1)
