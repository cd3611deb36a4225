"""`medlegal chat` offers /estimate: the same screens, numbered, and the chart written to the working directory."""

from __future__ import annotations

from pathlib import Path

from tests.cli_runner import runner
from tests.test_console_roadmap import CA_ORTHO


def test_console_estimate_after_the_flow_and_its_chart(tmp_path: Path) -> None:
    run = runner(tmp_path, MEDLEGAL_TODAY="2026-11-29")
    # the orthopedic surgeon's answers, then /estimate: propose 6-10 h (3), no panel cap (1), then the chart (11)
    result = run("chat", stdin="\n".join([*CA_ORTHO, "/help", "/estimate", "3", "1", "11"]) + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "/estimate - what QME and IME work could gross" in out
    assert "Reusing your answer in the questions (10-20 hours a week); we use 15 h." in out
    assert "3) 6-10 h (our assumption)" in out
    assert "15 h a week ≈ 65 h a month" in out and "This is an estimate, not advice" in out
    assert "Published IME fees run $750-$2,500 per examination" in out
    saved = [line for line in out.splitlines() if line.startswith("Saved to ")]
    assert len(saved) == 1
    path = Path(saved[0].removeprefix("Saved to "))
    assert path == (tmp_path / "estimate-2026-11-29.png").resolve()
    assert path.read_bytes().startswith(b"\x89PNG")
