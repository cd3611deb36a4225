"""`medlegal chat` offers the progress tracker: the roadmap's button opens it, numbers tick steps, /roadmap follows."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.cli_runner import runner
from tests.test_console_roadmap import CA_ORTHO


def _run(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return runner(tmp_path, MEDLEGAL_TODAY="2026-11-29")(*args, stdin=stdin)


def test_console_progress_ticks_two_steps(tmp_path: Path) -> None:
    added = _run(tmp_path, "sittings", "add", "--first", "2027-04-05", "--last", "2027-04-11", "--deadline",
                 "2027-02-19", "--note", "Pearson VUE", "--source", "https://www.dir.ca.gov/")  # fmt: skip
    assert added.returncode == 0, added.stderr
    # the roadmap's buttons: 1 Full roadmap, 2 Calendar, 3 Remind me, 4 My progress; then tick steps 1 and 2
    result = _run(tmp_path, "chat", stdin="\n".join([*CA_ORTHO, "4", "1", "2", "/roadmap"]) + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "  4) ✅ My progress" in out
    last_progress = out.rsplit("Your progress: California QME", 1)[1]
    assert "✅ Eligibility confirmed · 29 Nov 2026" in last_progress
    assert "✅ Report-writing course done · 29 Nov 2026" in last_progress
    assert "⬜ Exam application filed" in last_progress
    assert (
        "File QME Forms 100 and 102 with the exam fee. Due 19 Feb 2027 (82 days left): the application deadline "
        "of the 5-11 Apr 2027 window." in last_progress
    )
    assert "2 of 6 steps done" in last_progress
    roadmap = out.rsplit("Recommendation: California QME", 1)[1]
    assert "apply by 19 Feb 2027: 82 days left to apply, 127 days to the window. Pearson VUE." in roadmap
    assert "planning pace" not in roadmap  # the course is done: no course lead time
    assert "Done: Eligibility confirmed; Report-writing course done (/progress)" in roadmap
