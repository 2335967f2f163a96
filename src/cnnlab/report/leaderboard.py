"""The leaderboard page: every experiment in one sortable table (plain JavaScript, no library,
nothing loaded from outside) and a plot of accuracy against training time with the Pareto
front marked: the experiments no other one beats on both accuracy and time.
"""

from __future__ import annotations

import html
import io
import math
from pathlib import Path

from cnnlab.report.compare import Comparison, Row
from cnnlab.report.compare_output import display_cells, display_columns, footnote
from cnnlab.report.document import data_uri, page
from cnnlab.report.gallery import new_figure
from cnnlab.store import write_text

SORT_SCRIPT = """
(function () {
  function key(cell) {
    var v = cell.getAttribute('data-value');
    if (v === null) { v = cell.textContent.trim(); }
    if (v === '' || v === '-') { return null; }
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  function compare(a, b, dir) {
    if (a === null && b === null) { return 0; }
    if (a === null) { return 1; }   // missing values sort last either way
    if (b === null) { return -1; }
    if (typeof a === typeof b) { return (a < b ? -1 : a > b ? 1 : 0) * dir; }
    return (typeof a === 'number' ? -1 : 1) * dir;
  }
  function sortBy(table, th, col) {
    var dir = th.getAttribute('aria-sort') === 'descending' ? 1 : -1;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) { return compare(key(r1.cells[col]), key(r2.cells[col]), dir); });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener('click', function () { sortBy(table, th, col); });
      th.title = 'sort';
    });
  });
})();
"""

EXTRA_CSS = """
<style>
table.sortable th { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
tr.pareto td:first-child { font-weight: bold; }
table.sortable td { white-space: nowrap; }
</style>
"""


def sort_values(cmp: Comparison, row: Row) -> dict[str, object]:
    """Numbers behind the displayed cells, so columns sort numerically."""
    values: dict[str, object] = {
        "n": row.n, "params": row.params, "lr": row.config.get("train.lr"),
        "batch": row.config.get("train.batch_size"),
        "val acc": row.mean("val.accuracy"), "val loss": row.mean("val.log_loss"),
        "test acc": row.mean("test.accuracy"), "test loss": row.mean("test.log_loss"),
        "train time": row.mean("train_seconds"), cmp.metric: row.mean(cmp.metric),
    }
    if cmp.baseline is not None and row.significance is not None:
        delta = row.significance.delta
        values[f"vs {cmp.baseline.label}"] = delta
    return values


def leaderboard_html(cmp: Comparison, title: str, plot_png: bytes | None) -> str:
    esc = html.escape
    columns = display_columns(cmp) + ["pareto"]
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in cmp.rows:
        numbers = sort_values(cmp, row)
        cells = display_cells(cmp, row) + ["yes" if row.pareto else ""]
        tds = []
        for column, text in zip(columns, cells):
            value = numbers.get(column)
            attr = ""
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attr = f' data-value="{value!r}"' if math.isfinite(float(value)) else ' data-value=""'
            tds.append(f"<td{attr}>{esc(text)}</td>")
        css = ' class="pareto"' if row.pareto else ""
        body.append(f"<tr{css}>" + "".join(tds) + "</tr>")
    table = (f"<table class=\"sortable\" id=\"leaderboard\"><thead><tr>{head}</tr></thead>"
             f"<tbody>{''.join(body)}</tbody></table>")
    parts = [f"<h1>{esc(title)}</h1>",
             f"<p>{len(cmp.rows)} experiments from {sum(r.n for r in cmp.rows)} runs. "
             "Click a column header to sort.</p>", table, f"<p>{esc(footnote(cmp))}</p>"]
    if plot_png is not None:
        parts.append("<h2>Accuracy against training time</h2>")
        parts.append(f"<figure><img id=\"pareto-plot\" src=\"{data_uri(plot_png)}\" "
                     "alt=\"accuracy against training time\"><figcaption>Each point is an "
                     "experiment (mean over seeds, bars: sample std). Red points joined by the "
                     "line are the Pareto front: no other experiment is both more accurate and "
                     "faster to train.</figcaption></figure>")
    return page(title, "\n".join(parts), head_extra=EXTRA_CSS,
                body_extra=f"<script>{SORT_SCRIPT}</script>\n")


def pareto_plot(cmp: Comparison) -> bytes | None:
    metric = "test.accuracy" if any(r.values.get("test.accuracy") for r in cmp.rows) else "val.accuracy"
    points = [(row, row.mean(metric), row.std(metric), row.mean("train_seconds")) for row in cmp.rows]
    points = [p for p in points if math.isfinite(p[1]) and math.isfinite(p[3])]
    if not points:
        return None
    fig = new_figure(9.0, 5.5)
    ax = fig.add_subplot()
    for row, acc, std, secs in points:
        ax.errorbar([secs], [acc], yerr=[std if math.isfinite(std) else 0.0], fmt="o",
                    color="tab:red" if row.pareto else "tab:blue", markersize=6, capsize=3)
        ax.annotate(row.label, (secs, acc), textcoords="offset points", xytext=(5, 4), fontsize=7)
    front = sorted((secs, acc) for row, acc, _, secs in points if row.pareto)
    if len(front) > 1:
        ax.step([s for s, _ in front], [a for _, a in front], where="post", color="tab:red",
                linewidth=1, alpha=0.7, label="Pareto front")
        ax.legend(fontsize=8, loc="lower right")
    if max(p[3] for p in points) / max(min(p[3] for p in points), 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel(f"{metric} (mean over seeds)")
    ax.set_title("Accuracy against training time")
    ax.grid(True, alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_leaderboard(cmp: Comparison, out: Path, title: str = "cnnlab leaderboard") -> Path:
    return write_text(Path(out), leaderboard_html(cmp, title, pareto_plot(cmp)))
