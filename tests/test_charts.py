"""Figure builders: legends never overlap axis titles, log ticks never crowd, lines stay apart."""

from __future__ import annotations

import sys
from pathlib import Path

import plotly.graph_objects as go
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pages.charts import (  # noqa: E402
    LEGEND_ROW_PX,
    LINE_STYLES,
    _layout,
    log_tick_text,
    nice_log_ticks,
)


@pytest.mark.parametrize("entries", [2, 6, 14])
def test_legend_sits_below_the_axis_title_with_room_for_its_rows(entries: int) -> None:
    fig = go.Figure(
        [go.Scatter(x=[1], y=[1], name=f"a long legend entry {i}") for i in range(entries)]
    )
    fig.update_xaxes(title="mean answer length (tokens)")
    fig = _layout(fig, "t", height=400)
    rows = -(-sum(7 * len(f"a long legend entry {i}") + 45 for i in range(entries)) // 480)
    assert fig.layout.legend.yref == "container" and fig.layout.legend.y == 0
    # Bottom margin: tick labels (40) + the axis title (28) + one band per legend row.
    assert fig.layout.margin.b == 40 + 28 + rows * LEGEND_ROW_PX
    assert fig.layout.height == 400 + rows * LEGEND_ROW_PX


def test_log_ticks_are_few_and_readable() -> None:
    ticks = nice_log_ticks(1.5e-6, 0.12)
    assert 2 <= len(ticks) <= 9
    assert [log_tick_text(t) for t in ticks if t < 1e-3][0].startswith("1e-")
    assert nice_log_ticks(0.26, 0.3) == [0.26, 0.3]  # a narrow range still gets two ticks


def test_every_aggregator_has_its_own_dash_or_width() -> None:
    styles = {(s["dash"], s["width"], s["symbol"]) for s in LINE_STYLES.values()}
    assert len(styles) == len(LINE_STYLES)
    assert LINE_STYLES["dr_grpo"]["width"] > LINE_STYLES["vl_norm"]["width"]
