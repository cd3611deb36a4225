"""Render a `Roadmap` as Telegram HTML: a short message with buttons, and the full roadmap on request."""

from __future__ import annotations

from bot.screens import Button, Screen, esc
from bot.settings import Settings
from flows.progress_steps import load_steps
from flows.recommend import Path
from flows.roadmap import Item, Roadmap, day

MAX_MESSAGE = 3900  # Telegram allows 4096 characters; leave room for entities


def _item_line(item: Item, *, full: bool) -> str:
    due = f"<b>{esc(day(item.due))}</b> · " if item.due is not None else ""
    line = f"• {due}{esc(item.text)}"
    if full and item.detail:
        line += f"\n  {esc(item.detail)}"
    if full and item.cite is not None:
        line += f"\n  <i>Source: {esc(item.cite.label())}</i>"
    return line


def has_exam_dates(roadmap: Roadmap) -> bool:
    """QME and hybrid roadmaps have exam dates to remind of; IME-only and not-yet roadmaps have none."""
    return roadmap.plan is not None


def reminder_status(subscribed: bool, settings: Settings) -> str:
    if not subscribed:
        return "🔕 Exam reminders are off: tap the button below (or send /remind) to get them."
    days = ", ".join(str(d) for d in settings.reminder_days)
    return (
        f"🔔 Exam reminders are on: {days} days before your application deadline and exam window, at "
        f"{settings.reminder_hour}:00 ({settings.timezone}). /stop_reminders turns them off."
    )


def summary_text(roadmap: Roadmap, subscribed: bool | None = None, settings: Settings | None = None) -> str:
    lines = [f"<b>Recommendation: {esc(roadmap.title)}</b>", esc(roadmap.why)]
    if roadmap.sitting_lines:
        lines += ["", "<b>QME exam timing</b>"] + [f"• {esc(line)}" for line in roadmap.sitting_lines]
    if roadmap.states_with_rules:
        names = " and ".join(roadmap.states_with_rules)
        verb = "adds its" if len(roadmap.states_with_rules) == 1 else "add their"
        lines += [
            "",
            "<b>State rules</b>",
            f"• {esc(names)} {verb} own rules for evaluators: see the full roadmap.",
        ]
    if roadmap.done:
        labels = [s.label for s in load_steps().for_path(roadmap.path) if s.key in roadmap.done]
        lines += ["", f"<b>Done</b>: {esc('; '.join(labels))} (/progress)"] if labels else []
    if roadmap.next_steps:
        lines += ["", "<b>Next steps</b>"] + [_item_line(item, full=False) for item in roadmap.next_steps]
    if subscribed is not None and settings is not None:
        lines += ["", esc(reminder_status(subscribed, settings))]
    lines += ["", f"<i>As of {esc(day(roadmap.today))}. Tap Full roadmap for every step, the fees and the sources.</i>"]
    return "\n".join(lines)


def detail_screens(roadmap: Roadmap) -> list[Screen]:
    """The full roadmap, one section after another, split so no message passes Telegram's length limit."""
    chunks: list[str] = []
    current = f"<b>Full roadmap: {esc(roadmap.title)}</b> (as of {esc(day(roadmap.today))})"
    for section in roadmap.sections:
        block = "\n".join([f"<b>{esc(section.title)}</b>"] + [_item_line(i, full=True) for i in section.items])
        for piece in _split(block):
            if len(current) + len(piece) + 2 > MAX_MESSAGE:
                chunks.append(current)
                current = piece
            else:
                current = f"{current}\n\n{piece}"
    chunks.append(current)
    return [Screen(text) for text in chunks]


def _split(block: str) -> list[str]:
    """Split an oversized section between its lines (a single line never exceeds the limit)."""
    if len(block) <= MAX_MESSAGE:
        return [block]
    pieces: list[str] = []
    current = ""
    for line in block.split("\n"):
        if current and len(current) + len(line) + 1 > MAX_MESSAGE:
            pieces.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    pieces.append(current)
    return pieces


def roadmap_keyboard(roadmap: Roadmap, turn: int, subscribed: bool | None = None) -> tuple[tuple[Button, ...], ...]:
    first = [Button("📋 Full roadmap", f"g:{turn}")]
    if roadmap.events:
        first.append(Button("📅 Calendar (.ics)", f"k:{turn}"))
    rows = [tuple(first)]
    if subscribed is not None:
        toggle = (
            Button("🔕 Stop exam reminders", f"v:{turn}")
            if subscribed
            else Button("🔔 Remind me of exam dates", f"u:{turn}")
        )
        rows.append((toggle,))
    if roadmap.path is not Path.NOT_YET:
        rows.append((Button("✅ My progress", "prg:o"),))  # bot.progress owns the "prg" verb
    rows += [(Button("✏️ Review or change answers", f"s:{turn}"),), (Button("🔁 Start over", f"n:{turn}"),)]
    return tuple(rows)
