"""Plain tables (a header row and text cells) in the table formats: Markdown, LaTeX, HTML, CSV.

Used by the layouts whose cells are not ranked metrics (``--layout cost``, the imbalance part of
``--layout probe``); the ranked tables go through ``aggregate.build_tables`` and the templates.
"""

from __future__ import annotations

import csv
import html
import io

from mmbench.reporting.aggregate import _latex_escape


def render_plain(title: str, headers: list[str], rows: list[list[str]], fmt: str, notes: list[str] = ()) -> str:
    """One table with a title line and notes below it."""
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return buf.getvalue()
    if fmt == "md":
        lines = [f"### {title}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines + [""] + [f"{n}" for n in notes] + [""]) + "\n"
    if fmt == "latex":
        body = [r"\begin{table}[t]\centering\small", rf"\caption{{{_latex_escape(title)}}}",
                r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}", r"\toprule",
                " & ".join(_latex_escape(h) for h in headers) + r" \\", r"\midrule"]
        body += [" & ".join(_latex_escape(c) for c in r) + r" \\" for r in rows]
        body += [r"\bottomrule", r"\end{tabular}"]
        body += [r"{\raggedright\footnotesize " + _latex_escape(n) + r"\par}" for n in notes]
        return "\n".join(body + [r"\end{table}", ""])
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        notes_html = "".join(f"<p class=\"note\">{html.escape(n)}</p>" for n in notes)
        return (f"<h3>{html.escape(title)}</h3>\n<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
                f"</table>\n{notes_html}\n")
    raise ValueError(f"unknown format {fmt!r}")


def html_page(title: str, body: str) -> str:
    """A standalone HTML page around ``body``."""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            "<style>table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ccc;"
            "text-align:right}td:first-child,th:first-child{text-align:left}</style></head>\n"
            f"<body>\n{body}</body></html>\n")


def mean_std(values) -> str:
    """``m ± s`` (ddof = 1; 0 for one value) of the non-None values, ``–`` when there are none."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return "–"
    m = sum(vals) / len(vals)
    s = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
    return f"{m:.2f} ± {s:.2f}"
