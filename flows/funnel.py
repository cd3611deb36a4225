"""The admins' funnel: where each physician stands on a progress track.

A physician is counted once per track (QME, IME; a hybrid roadmap is in both), at the first step of that track
they have not ticked, or as having done them all. The counting and small-cell suppression are the export's
(built-in polls progress.qme and progress.ime, see bot/export_data.py and flows/aggregate.py), so /funnel and
`medlegal export` publish the same figures under one rule.
"""

from __future__ import annotations

from collections.abc import Iterable

from flows.progress_steps import Steps, Track, load_steps

TRACK_TITLES: dict[Track, str] = {
    "qme": "QME track (QME and hybrid roadmaps)",
    "ime": "IME track (IME and hybrid roadmaps)",
}


def position(track: Track, ticked: Iterable[str], steps: Steps | None = None) -> str:
    """The first step of the track not ticked yet, or "<track>_done" when all are."""
    done = set(ticked)
    steps = steps or load_steps()
    return next((s.key for s in steps.steps if s.track == track and s.key not in done), f"{track}_done")
