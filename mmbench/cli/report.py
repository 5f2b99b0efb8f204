"""``mmbench table``, ``mmbench report`` and ``mmbench figure``: what run records show
(``mmbench.reporting``; the paper's tables and figures: ``mmbench.paper``)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mmbench.cli.options import (
    echo_problems,
    filter_options,
    friendly_errors,
    jobs_option,
    load_records,
    parse_roots,
    results_option,
    results_root,
    roots_option,
    scan_records,
    select_option,
    split_option,
    table_options,
)
from mmbench.results.errors import MMBenchError

_METRICS = click.Choice(["acc", "map", "f1"])


@click.command()
@table_options
@click.option("--metric", "metrics", multiple=True, type=_METRICS,
              help="Metrics (default: all for table1/long, acc and f1 for table2).")
@click.option(
    "--layout",
    type=click.Choice(["table1", "table2", "long", "probe", "cost"]),
    default="table1",
    show_default=True,
    help="table1: fusion and every modality per dataset; table2: fusion metrics per dataset; long: one row per "
    "value; probe: linear-probe metrics beside the native ones, and imbalance scores (mmbench probe); cost: "
    "params, FLOPs, s/epoch, peak memory relative to joint.",
)
@click.option("--format", "fmt", type=click.Choice(["md", "latex", "html", "csv"]), default="md", show_default=True,
              help="csv exports the per-seed values.")
@click.option("--standalone", is_flag=True, help="LaTeX: a complete document that pdflatex compiles.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write to FILE.")
@click.option("--paper", is_flag=True,
              help="The paper's tables and metrics: its reported value and ours − reported beside each cell "
                   "(no records needed).")
@click.option("--paper-table", "paper_tables", multiple=True, type=click.Choice([f"table{i}" for i in range(1, 7)]),
              help="With --paper: which of the paper's tables (default: table1 layout -> Tables 1 and 3, table2 -> 2).")
@click.option("--tuned", "tuned_label", default=None, metavar="LABEL",
              help="Default and tuned (mmbench tune --final) rows side by side, with the study's footnote.")
@click.option("--strict-budget", is_flag=True, help="--tuned: refuse rows tuned with different budgets.")
@click.option("--include-tuning", is_flag=True, help="Also show the tuning trial runs (hidden by default).")
@friendly_errors
def table(results, datasets, methods, select, split, expected, alpha, metrics, layout, fmt, standalone, out, paper,
          paper_tables, tuned_label, strict_budget, include_tuning):
    """Mean ± std over seeds for fusion and every modality; best bold, top three shaded,
    Welch's t-test against each column's best."""
    if tuned_label:
        from mmbench.tuning.table import render as tuned_table

        scan = scan_records(results, datasets, methods)
        text = tuned_table(scan.records, results_root(results), tuned_label, datasets, strict_budget)
    elif paper or paper_tables:
        from mmbench.paper.artefacts import paper_table_text
        from mmbench.results.store import load_results

        records = load_results(results_root(results), datasets or None, methods or None)
        text = paper_table_text(records, datasets, select, split, layout, fmt, standalone, paper_tables)
    else:
        from mmbench.reporting.aggregate import render_table

        scan = scan_records(results, datasets, methods, include_tuning)
        text = render_table(scan.records, fmt, metrics or None, select, layout=layout, split=split,
                            expected=expected, alpha=alpha, standalone=standalone, problems=scan.problems)
        if fmt == "csv":  # the csv has no notes: every problem goes to stderr
            for problem in scan.problems:
                click.echo(f"note: {problem.line()}", err=True)
        else:
            echo_problems(scan.problems, "the table's notes")
    if out:
        from mmbench.results.store import write_text

        write_text(out, text)  # a disk fault: one line naming the path (DiskError, exit 1)
        click.echo(f"wrote {out}")
    else:
        click.echo(text)


@click.command()
@table_options
@click.option("--metric", "metrics", multiple=True, type=_METRICS, help="Metrics of the Table 1 section (default all).")
@click.option("--title", default="mmbench report", show_default=True)
@jobs_option("Processes drawing the figures (one dataset each); 0: one per dataset up to the CPUs.", default=0,
             min_jobs=0, short=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML file to write.")
@click.option("--figures", "figures_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Also embed the PNG figures of DIR (written by `mmbench figure` or `mmbench reproduce`).")
@friendly_errors
def report(results, datasets, methods, select, split, expected, alpha, metrics, title, jobs, out, figures_dir):
    """One standalone HTML file: the tables and, per dataset, accuracy curves per head, the
    imbalance ratio, classifier counts (sustained_boost) and unimodal-versus-fusion bars."""
    from mmbench.reporting.report import build_report
    from mmbench.reporting.report import figure_jobs as default_jobs

    t0 = time.time()
    scan = scan_records(results, datasets, methods)
    records = scan.records
    jobs = jobs or default_jobs(len({r["dataset"] for r in records}))
    html = build_report(records, select, split, metrics or None, expected, alpha, title=title, jobs=jobs,
                        problems=scan.problems, figures_dir=figures_dir)
    echo_problems(scan.problems, f"the report's notes ({out})")
    from mmbench.results.store import write_text

    write_text(out, html)  # a disk fault: one line naming the path (DiskError, exit 1)
    click.echo(f"wrote {out} ({len(records)} run records, {time.time() - t0:.1f} s)")


@click.command()
@click.argument("name", type=click.Choice(["sensitivity", "classifiers", "tsne", "tuning"]))
@results_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("figures"), show_default=True)
@filter_options
@select_option
@split_option
@click.option("--seed", type=int, default=0, show_default=True, help="tsne: the run seed drawn and the t-SNE seed.")
@roots_option("tsne: ")
@click.option("--points", type=click.IntRange(min=0), default=2000, show_default=True,
              help="tsne: at most this many items of the split (stratified, seeded); 0 = all.")
@click.option("--study", "label", default=None, help="tuning: the study label (mmbench tune --status lists them).")
@click.option("--x", "x_axis", type=click.Choice(["trials", "hours"]), default="trials", show_default=True)
@click.option("--estimator", type=click.Choice(["dodge", "unbiased"]), default="dodge", show_default=True)
@click.option("--band", type=click.Choice(["bootstrap", "std"]), default="bootstrap", show_default=True)
@friendly_errors
def figure(name, results, out, datasets, methods, select, split, seed, roots, points, label, x_axis, estimator, band):
    """The paper's figures from run records, as PDF and PNG: sensitivity (Fig. 3), classifiers
    (Fig. 4), tsne (Fig. 5); tuning: expected best validation score against the tuning budget."""
    if name == "tuning":
        from mmbench.tuning import curves

        if not label:
            raise MMBenchError("figure tuning needs --study LABEL (mmbench tune --status lists them)")
        curves.write(results_root(results), label, datasets, out, x_axis, estimator, band, click.echo)
        return
    from mmbench.paper.figure_files import write_figures

    records = load_records(results, datasets, methods)
    roots = parse_roots(roots, sorted({r["dataset"] for r in records}))
    write_figures(name, records, out, select, split, seed, roots, echo=click.echo, points=points)
