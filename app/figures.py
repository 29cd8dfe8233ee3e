"""The house look of every figure: Plotly figures as plain dicts (data + layout), drawn in the page by
static/plotly.min.js. Each page's module builds its own figures with these.

Plain dicts rather than plotly.graph_objects: a figure object validates every property on
construction, which costs more than the whole query of a warm page.
"""

from __future__ import annotations

from typing import Any

RED = "#d62728"
GREY = "#8c8c8c"
BLUE = "#1f77b4"
ORANGE = "#ff7f0e"
_FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13}

Figure = dict[str, Any]


def base_layout(**extra: Any) -> dict[str, Any]:
    """A figure's layout in the house style, with `extra` on top."""
    result: dict[str, Any] = {
        "font": _FONT,
        "margin": {"l": 60, "r": 20, "t": 30, "b": 55},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "legend": {"orientation": "h", "y": 1.08, "x": 0},
        "hovermode": "closest",
    }
    result.update(extra)
    return result


def titled_axis(title: str, **extra: Any) -> dict[str, Any]:
    """An axis with a title and light grid lines."""
    return {"title": {"text": title}, "gridcolor": "#e6e6e6", "zeroline": False, **extra}


def dashed_line(x0: float, x1: float, y0: float, y1: float, xref: str, yref: str) -> dict[str, Any]:
    """A dashed reference line (a base rate, a threshold)."""
    return {"type": "line", "x0": x0, "x1": x1, "y0": y0, "y1": y1, "xref": xref, "yref": yref,
            "line": {"color": "#444", "width": 1.5, "dash": "dash"}}


DEPTH_AXIS = titled_axis("relative depth (first layer 0, last 1)", range=[-0.03, 1.03])
SHARE_AXIS = titled_axis("share of units", tickformat=".1%", rangemode="tozero")  # shares of a few percent need the decimal


def interval_bars(values: list[float | None], intervals: list[tuple[float, float] | None],
                  color: str) -> dict[str, Any]:
    """A trace's `error_y` drawing each value's interval (lo, hi): asymmetric bars, none where either is missing."""
    up = [None if v is None or ci is None else ci[1] - v for v, ci in zip(values, intervals)]
    down = [None if v is None or ci is None else v - ci[0] for v, ci in zip(values, intervals)]
    return {"type": "data", "symmetric": False, "array": up, "arrayminus": down, "color": color, "thickness": 1.2,
            "width": 3}


def percent(share: float | None) -> str:
    """A share as a percentage with one decimal, for tables and sentences; 'n/a' for None."""
    return "n/a" if share is None else f"{100 * share:.1f}%"
