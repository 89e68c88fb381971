"""``index.html`` of ``mm1 plots``: one self-contained offline page (inline CSS, no scripts, no external URLs).

First the lesson verdicts (``dashboards.verdicts``: per lesson of the paper, the sweep, effect with its 95% CI and
whether the runs reproduce it); then per figure: its title, the PNG (linking to the SVG), a caption (sweep, runs,
seeds, what is averaged) and the data table it plots; then the figures that were skipped and why. Images and files
are linked by relative paths, so the folder can be moved, zipped or opened from the MLflow artifacts as it is.
"""

from __future__ import annotations

import datetime
import html
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

MAX_ROWS = 40
LESSON_COLUMNS = ("lesson", "paper", "claim", "verdict", "effect [95% CI]", "sweep", "metric", "runs / seeds", "detail")

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1d2329; background: #f6f7f9; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 10px; }
.meta { color: #56606b; margin: 0 0 18px; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13px;
       background: #eceef1; padding: 1px 5px; border-radius: 4px; word-break: break-all; }
nav, section { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 16px 20px;
               margin: 0 0 20px; }
nav ol { margin: 0; padding-left: 22px; columns: 2; column-gap: 32px; }
nav li { break-inside: avoid; }
a { color: #0b5cad; }
figure { margin: 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eef0f2; }
figcaption { color: #3b444d; margin: 8px 0 6px; }
.files { font-size: 14px; margin: 4px 0 10px; }
.kind { color: #6b7580; font-weight: normal; font-size: 14px; }
details summary { cursor: pointer; color: #3b444d; margin: 4px 0; }
.scroll { overflow-x: auto; }
table.data { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
table.data th, table.data td { border-bottom: 1px solid #e3e6ea; padding: 3px 10px; text-align: right;
                                white-space: nowrap; }
table.data th { background: #f1f3f5; font-weight: 600; }
table.lessons th, table.lessons td { text-align: left; white-space: normal; vertical-align: top; }
table.lessons .nowrap, table.lessons code { white-space: nowrap; word-break: normal; }
table.lessons td:last-child { min-width: 20em; }
.verdict { font-weight: 600; white-space: nowrap; }
.reproduced { color: #1a7f37; }
.not-reproduced { color: #b42318; }
.inconclusive { color: #9a6700; }
.not-run { color: #6b7580; }
table.data tbody tr:hover { background: #f7f9fb; }
table.skipped td { text-align: left; white-space: normal; }
.note { color: #6b7580; font-size: 13px; }
"""


def write_index(
    out: Path,
    experiment: str,
    figures: Sequence[Any],
    skipped: Sequence[tuple[str, str]],
    source_uri: str,
    lessons: Sequence[Any] | None = None,
) -> Path:
    """Writes ``out/index.html`` for ``figures`` (``dashboards.plots.Figure``) and ``skipped`` (name, reason),
    opening with a "Lessons" section when ``lessons`` (``dashboards.verdicts.Verdict``) are given."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    e = html.escape
    ids = [_anchor(f"{f.name}-{'-'.join(sorted(f.sweeps)) or 'all'}-{i}") for i, f in enumerate(figures)]
    toc = [f'<li><a href="#lessons">Lessons ({_reproduced(lessons)})</a></li>'] if lessons else []
    toc += [f'<li><a href="#{a}">{e(f.title)}</a></li>' for a, f in zip(ids, figures, strict=True)]
    if skipped:
        toc.append(f'<li><a href="#skipped">Skipped figures ({len(skipped)})</a></li>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>MM1 lesson plots - {e(experiment)}</title>",
        f"<style>{CSS}</style></head><body><main>",
        f"<h1>MM1 lesson plots: {e(experiment)}</h1>",
        f'<p class="meta">Tracking URI <code>{e(source_uri)}</code> &middot; generated {e(now)} &middot; '
        f"{len(figures)} figure(s), {len(skipped)} skipped</p>",
        '<nav aria-label="Contents"><h2>Contents</h2><ol>' + "".join(toc) + "</ol></nav>" if toc else "",
        _lessons_section(lessons) if lessons else "",
    ]
    parts += [_section(out, anchor, figure) for anchor, figure in zip(ids, figures, strict=True)]
    if not figures:
        parts.append("<section><p>No figure could be drawn from these runs; see below.</p></section>")
    if skipped:
        rows = "".join(f"<tr><td><code>{e(name)}</code></td><td>{e(reason)}</td></tr>" for name, reason in skipped)
        parts.append(
            '<section id="skipped"><h2>Skipped figures</h2>'
            '<table class="data skipped"><thead><tr><th>figure</th><th>why</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>"
        )
    parts.append("</main></body></html>\n")
    index = out / "index.html"
    index.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    return index


def _reproduced(lessons: Sequence[Any]) -> str:
    return f"{sum(v.verdict == 'reproduced' for v in lessons)} of {len(lessons)} reproduced"


def _lessons_section(lessons: Sequence[Any]) -> str:
    """The verdict table: a row per lesson and sweep, its claim, verdict, effect [95% CI] and how it was measured."""
    rows = "".join(_lesson_row(v) for v in lessons)
    head = "".join(f"<th>{name}</th>" for name in LESSON_COLUMNS)
    return (
        f'<section id="lessons"><h2>Lessons: {_reproduced(lessons)}</h2>'
        '<p class="note">Effect: the claimed difference of seed-averaged cells, with a 95% t interval from the pooled '
        "within-cell (seed) variance (the LR law: its slope, with a bootstrap interval); seeds = the fewest runs in a "
        "cell it uses. Reproduced: the interval lies on the claimed side; not reproduced: on the other side; else "
        "inconclusive (so is one seed per cell). Not run: no sweep of this experiment measures it.</p>"
        f'<div class="scroll"><table class="data lessons"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
        "</table></div></section>"
    )


def _lesson_row(v: Any) -> str:
    e = html.escape
    runs = f"{v.runs} / {v.seeds}" if v.runs else "-"
    return (
        f'<tr><td><code>{e(v.lesson)}</code></td><td class="nowrap">{e(v.paper)}</td><td>{e(v.claim)}</td>'
        f'<td class="verdict {_anchor(v.verdict)}">{e(v.verdict)}</td><td class="nowrap">{e(v.effect_text)}</td>'
        f'<td>{e(v.sweep or "-")}</td><td>{e(v.metric or "-")}</td><td class="nowrap">{runs}</td>'
        f"<td>{e(v.detail)}</td></tr>"
    )


def _section(out: Path, anchor: str, figure: Any) -> str:
    e = html.escape
    by_suffix = {Path(f).suffix.lower(): _relative(out, Path(f)) for f in figure.files}
    png, svg, csv = by_suffix.get(".png"), by_suffix.get(".svg"), by_suffix.get(".csv")
    image = ""
    if png:
        img = f'<img src="{e(png)}" alt="{e(figure.title)}">'
        image = f'<a href="{e(svg)}">{img}</a>' if svg else img
    pairs = ((svg, "SVG"), (png, "PNG"), (csv, "data (CSV)"))
    links = [f'<a href="{e(path)}">{label}</a>' for path, label in pairs if path]
    shown = figure.display if getattr(figure, "display", None) is not None else figure.table
    table = _table(shown)
    note = ""
    if len(shown) > MAX_ROWS:
        note = f'<p class="note">First {MAX_ROWS} of {len(shown)} rows; all of them in the CSV.</p>'
    elif shown is not figure.table:
        note = '<p class="note">Last logged step of each line; every step is in the CSV.</p>'
    return (
        f'<section id="{anchor}"><h2>{e(figure.title)} <span class="kind">{e(figure.name)}</span></h2>'
        f"<figure>{image}<figcaption>{e(getattr(figure, 'caption', ''))}</figcaption></figure>"
        f'<p class="files">Files: {" &middot; ".join(links)}</p>'
        f'<details open><summary>Data table ({len(shown)} row(s))</summary>{note}<div class="scroll">{table}</div>'
        "</details></section>"
    )


def _table(frame: pd.DataFrame) -> str:
    frame = frame.head(MAX_ROWS)
    formatters = {column: (_count if str(column).endswith(" n") else _number) for column in frame.columns}
    return frame.to_html(index=False, classes="data", border=0, formatters=formatters, na_rep="-", escape=True)


def _number(value: Any) -> str:
    """2 decimals for percents and losses, 3 significant digits below 1 (LRs, shares), integers as integers."""
    if value is None or isinstance(value, bool) or isinstance(value, str):
        return "-" if value is None else str(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return "-"
        if float(value).is_integer() and abs(value) < 1e9:
            return str(int(value))
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"
    return str(value)


def _count(value: Any) -> str:
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return "-"


def _relative(out: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(out.resolve()).as_posix()
    except ValueError:
        return Path(os.path.relpath(path.resolve(), out.resolve())).as_posix()


def _anchor(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower()
