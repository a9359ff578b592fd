"""Figures for slides: every chart downloads as PNG or SVG at three times its screen size, and a
page downloads all its charts at once as one self-contained HTML file.

Plotly draws the images in the browser (its camera button), so the server needs no image
renderer (kaleido and a headless browser would be needed for server-side export). The
all-charts file embeds plotly.js and the figures, so it opens offline; its buttons save every
chart as PNG or SVG in one click.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence

import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

EXPORT_SCALE = 3  # image pixels per screen pixel: a 900-pixel-wide chart becomes 2700 wide
FORMATS = ("png", "svg")


def slug(text: str) -> str:
    """A file-name-safe version of a title: lower case, words joined by '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "chart"


def chart_config(name: str, fmt: str = "png") -> dict:
    """Plotly config: the camera button saves `name`.<fmt> at EXPORT_SCALE times screen size."""
    if fmt not in FORMATS:
        raise ValueError(f"image format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return {
        "displaylogo": False,
        "toImageButtonOptions": {
            "format": fmt,
            "filename": slug(name),
            "scale": EXPORT_SCALE,
            "height": None,  # the chart's size on screen
            "width": None,
        },
    }


def figures_html(title: str, figures: Sequence[tuple[str, go.Figure]]) -> str:
    """One self-contained HTML page with every figure and buttons that save all as PNG or SVG."""
    blocks = []
    for i, (name, fig) in enumerate(figures):
        div = pio.to_html(
            fig,
            full_html=False,
            include_plotlyjs=i == 0,  # plotly.js once, inline: the file works offline
            div_id=f"fig-{i}",
            config=chart_config(name, "png"),
            default_width="100%",
        )
        blocks.append(f"<section><h2>{html.escape(name)}</h2>{div}</section>")
    names = json.dumps([slug(name) for name, _ in figures])
    buttons = "".join(
        f"<button onclick=\"saveAll('{fmt}')\">Save every chart as {fmt.upper()}</button> "
        for fmt in FORMATS
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}}
section{{margin-bottom:2em}} button{{font-size:1em;margin-right:.5em}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{buttons}(images at {EXPORT_SCALE}× screen size; each chart's camera button saves one)</p>
{"".join(blocks)}
<script>
const NAMES = {names};
async function saveAll(fmt) {{
  for (let i = 0; i < NAMES.length; i++) {{
    await Plotly.downloadImage(document.getElementById('fig-' + i),
      {{format: fmt, scale: {EXPORT_SCALE}, filename: NAMES[i]}});
  }}
}}
</script></body></html>
"""


class ChartBook:
    """The charts of one page: each drawn with export settings, and all downloadable at once."""

    def __init__(self, page: str, title: str):
        self.page = page
        self.title = title
        self.figures: list[tuple[str, go.Figure]] = []

    def format_picker(self) -> str:
        """A radio choosing what the charts' camera buttons save (PNG or SVG)."""
        return st.radio(
            "chart downloads",
            FORMATS,
            format_func=str.upper,
            horizontal=True,
            key=f"{self.page}.export_format",
            help="The camera button at the top right of each chart saves it in this format, "
            f"at {EXPORT_SCALE}× its screen size (for slides).",
        )

    def show(self, fig: go.Figure, key: str, name: str | None = None) -> None:
        """Draw a chart whose camera button saves it as PNG or SVG; remember it for export."""
        name = name or (fig.layout.title.text or key)
        fmt = st.session_state.get(f"{self.page}.export_format", "png")
        self.figures.append((name, fig))
        st.plotly_chart(fig, width="stretch", key=key, config=chart_config(name, fmt))

    def html(self) -> str:
        """Every chart shown so far as one self-contained HTML page."""
        return figures_html(self.title, self.figures)

    def download_all(self) -> None:
        """A button that downloads every chart of the page as one HTML file (built on click)."""
        figures = list(self.figures)
        st.download_button(
            f"Export all {len(figures)} charts",
            data=lambda: figures_html(self.title, figures),
            file_name=f"{slug(self.title)}-charts.html",
            mime="text/html",
            key=f"{self.page}.export_all",
            icon=":material/download:",
            on_click="ignore",
            help="One HTML file with every chart of this page (it works offline); its buttons "
            "save all of them as PNG or SVG at once.",
        )
