"""The estimator's chart: QME and IME gross a month by hours a week, as a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import io

from flows.estimate import Assumptions, Inputs, curve
from flows.facts import Facts


def chart_png(inputs: Inputs, facts: Facts, assumptions: Assumptions) -> bytes:
    """Two bands (low-high) over 0..chart_max_hours hours a week, the physician's own hours marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    points = curve(inputs, assumptions.choices.chart_max_hours)
    hours = [h for h, _ in points]
    figure = Figure(figsize=(8, 4.8), dpi=100)
    axes = figure.add_subplot()
    sides = (
        ("QME (fee schedule)", "#1f77b4", [e.qme_monthly for _, e in points]),
        ("IME (reported fees)", "#ff7f0e", [e.ime_monthly for _, e in points]),
    )
    for label, color, ranges in sides:
        low = [r.low for r in ranges]
        high = [r.high for r in ranges]
        axes.fill_between(hours, low, high, color=color, alpha=0.25, label=f"{label}: low-high")
        axes.plot(hours, low, color=color, linewidth=1)
        axes.plot(hours, high, color=color, linewidth=1)
    axes.axvline(inputs.hours_per_week, color="grey", linestyle="--", linewidth=1, label="your hours")
    axes.set_xlabel("hours a week")
    axes.set_ylabel("gross a month (USD)")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"${value:,.0f}"))
    axes.set_title("Estimated gross a month: an estimate, not advice")
    axes.set_xlim(0, assumptions.choices.chart_max_hours)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
