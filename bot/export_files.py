"""The export's files: CSV and JSON with the columns of shared/interfaces.md, and one PNG bar chart per poll.

A suppressed count is written "<k" (with the configured k) and its share left empty; charts draw no bar for
it, only the "<k" label. Nothing here knows who answered: the rows are already anonymised.
"""

from __future__ import annotations

import csv
import io
import json
import re
import textwrap
from typing import Any

from flows.aggregate import Export, Month, Row

COLUMNS = ("poll", "question", "option", "breakdown", "count", "share", "respondents", "period_start", "period_end")


def _record(row: Row, suppressed: str) -> dict[str, Any]:
    return {
        "poll": row.poll,
        "question": row.question,
        "option": row.option,
        "breakdown": row.breakdown,
        "count": suppressed if row.count is None else row.count,
        "share": row.share,
        "respondents": row.respondents,
        "period_start": row.period_start.isoformat(),
        "period_end": row.period_end.isoformat(),
    }


def csv_bytes(export: Export) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in export.rows:
        record = _record(row, export.suppressed)
        record["share"] = "" if row.share is None else f"{row.share:g}"
        writer.writerow([record[c] for c in COLUMNS])
    return out.getvalue().encode()


def json_bytes(export: Export) -> bytes:
    """A JSON array of objects with exactly the CSV's columns; a suppressed share is null."""
    records = [_record(row, export.suppressed) for row in export.rows]
    return (json.dumps(records, indent=2, ensure_ascii=False) + "\n").encode()


def period_text(since: Month, until: Month) -> str:
    first = since.first_day.strftime("%b %Y")
    last = until.first_day.strftime("%b %Y")
    return first if since == until else f"{first} - {last}"


def chart_name(poll: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", poll) + ".png"


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def png_bytes(export: Export, poll: str) -> bytes:
    """A horizontal bar chart of the shares of one poll, a panel per breakdown cell; "<k" where withheld."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = export.rows_of(poll)
    cells = list(dict.fromkeys(r.breakdown for r in rows))
    options = list(dict.fromkeys(r.option for r in rows))
    height = 0.9 + len(cells) * (0.45 * len(options) + 0.7)
    fig, axes = plt.subplots(len(cells), 1, figsize=(8.5, height), squeeze=False)
    try:
        for ax, cell in zip(axes[:, 0], cells, strict=True):
            cell_rows = [r for r in rows if r.breakdown == cell]
            shares = [100 * (r.share or 0.0) for r in cell_rows]
            positions = list(range(len(cell_rows)))[::-1]
            ax.barh(positions, shares, color="#3b6ea5", height=0.65)
            for y, row, share in zip(positions, cell_rows, shares, strict=True):
                label = export.suppressed if row.count is None else f"{share:.0f}% ({row.count})"
                ax.text(share + 1, y, label, va="center", fontsize=9, color="#555555" if row.count is None else "k")
            ax.set_yticks(positions, [_wrap(r.option, 34) for r in cell_rows], fontsize=9)
            ax.set_xlim(0, 118)
            ax.set_xticks([0, 25, 50, 75, 100], ["0%", "25%", "50%", "75%", "100%"], fontsize=8)
            ax.spines[["top", "right"]].set_visible(False)
            respondents = cell_rows[0].respondents
            if cell != "all":
                ax.set_title(f"{cell.split(':', 1)[1]}: {respondents} respondents", fontsize=9, loc="left")
        first = rows[0]
        who = f"{first.respondents} respondents" if export.by is None else f"by {export.by}"
        period = period_text(export.since, export.until)
        fig.suptitle(f"{_wrap(first.question, 70)}\n{who}, {period}", fontsize=11)
        fig.text(
            0.99,
            0.005,
            f"{export.suppressed}: withheld (fewer than {export.k}, or would let such a count be worked out)",
            ha="right",
            va="bottom",
            fontsize=7,
            color="#777777",
        )
        fig.tight_layout(rect=(0, 0.02, 1, 1))
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=110)
        return out.getvalue()
    finally:
        plt.close(fig)


def charts(export: Export) -> dict[str, bytes]:
    """`<poll>.png` -> the chart, for every poll in the export."""
    return {chart_name(poll): png_bytes(export, poll) for poll in export.polls()}
