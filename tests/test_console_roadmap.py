"""`medlegal chat` shows the same roadmap as Telegram and writes the .ics file to the working directory."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

from icalendar import Calendar

from tests.cli_runner import runner

CA_ORTHO = ["1", "1", "11", "1", "3", "1", "1", "1", "3", "3", "1", "1", "1", "1"]


def _run(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return runner(tmp_path, MEDLEGAL_TODAY="2026-11-29")(*args, stdin=stdin)


def test_console_roadmap_and_calendar_file(tmp_path: Path) -> None:
    added = _run(tmp_path, "sittings", "add", "--first", "2027-04-05", "--last", "2027-04-11", "--deadline",
                 "2027-02-19", "--note", "Pearson VUE", "--source", "https://www.dir.ca.gov/")  # fmt: skip
    assert added.returncode == 0, added.stderr
    # answer the persona, then tap "Full roadmap" (1) and "Calendar" (2) on the roadmap message
    result = _run(tmp_path, "chat", stdin="\n".join([*CA_ORTHO, "1", "/roadmap", "2"]) + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Recommendation: California QME" in out
    assert "apply by 19 Feb 2027: 82 days left to apply, 127 days to the window" in out
    assert "Full roadmap: California QME" in out and "ML201 Comprehensive evaluation $2,015.00" in out
    saved = [line for line in out.splitlines() if line.startswith("Saved to ")]
    assert len(saved) == 1
    path = Path(saved[0].removeprefix("Saved to "))
    assert path == (tmp_path / "qme-roadmap-2026-11-29.ics").resolve()
    events = {str(e.get("summary")): e for e in Calendar.from_ical(path.read_bytes()).walk("VEVENT")}
    assert events["QME application deadline: Forms 100 and 102"].decoded("dtstart") == date(2027, 2, 19)
    assert events["QME competency exam window"].decoded("dtstart") == date(2027, 4, 5)
