"""The HTML report: curves from history.jsonl (imbalance ratio, classifier counts), the
standalone file with tables and embedded figures, the CLI, pdflatex and headless Chromium."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from reporting_fixtures import write_fixed_records, write_run

from mmbench.benchmark.store import load_results
from mmbench.cli import cli
from mmbench.reporting import curves
from mmbench.reporting.aggregate import render_table
from mmbench.reporting.report import build_report

IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_fixed_records(root)
    return root


@pytest.fixture(scope="module")
def report_html(results):
    return build_report(load_results(results))


def test_imbalance_ratio_is_max_over_min_modality_accuracy():
    frame = pd.DataFrame(
        [("d", "r", "m", 0, 0, "fusion", 0.9), ("d", "r", "m", 0, 0, "audio", 0.6),
         ("d", "r", "m", 0, 0, "video", 0.3), ("d", "r", "m", 0, 1, "audio", 0.5),
         ("d", "r", "m", 0, 1, "video", 0.0), ("d", "u", "unimodal", 0, 0, "audio", 0.6),
         ("d", "u", "unimodal", 0, 0, "fusion", 0.6), ("d", "t", "m", 0, 0, "a", 0.2),
         ("d", "t", "m", 0, 0, "b", 0.4), ("d", "t", "m", 0, 0, "c", 0.8)],
        columns=curves.CURVE_COLUMNS,
    )
    ratio = curves.imbalance_frame(frame).set_index(["run", "epoch"])["value"]
    assert ratio[("r", 0)] == pytest.approx(2.0, abs=1e-6)  # 0.6 / 0.3, fusion ignored
    assert np.isnan(ratio[("r", 1)])  # weakest modality at 0: undefined
    assert ("u", 0) not in ratio.index  # one modality head: no ratio
    assert ratio[("t", 0)] == pytest.approx(4.0, abs=1e-6)  # three modalities: 0.8 / 0.2


def test_curves_and_classifier_counts_come_from_history(results):
    hist = curves.load_histories(load_results(results, datasets=["mfeat"], methods=["sustained_boost"]))
    assert len(hist) == 2  # the failed seed has no curve
    curve = curves.curves_frame(hist, "test")
    s0 = curve[(curve["seed"] == 0) & (curve["head"] == "fusion")].sort_values("epoch")
    # fixture: acc = final * (0.6 + 0.4 (e+1)/5) + offset(seed 0) = 0.935 * frac - 0.012
    expect = [round(0.935 * (0.6 + 0.4 * (e + 1) / 5) - 0.012, 4) for e in range(5)]
    assert s0["value"].tolist() == pytest.approx(expect, abs=1e-6)
    clf = curves.classifier_frame(hist)
    image = clf[(clf["seed"] == 0) & (clf["modality"] == "image")].sort_values("epoch")["n"].tolist()
    assert image == [1 + (e * 3) // 5 for e in range(5)]
    band = curves.band(curve[curve["head"] == "fusion"], ["run"])
    last = band[band["epoch"] == 4].iloc[0]
    assert last["mean"] == pytest.approx(np.mean([0.923, 0.935]), abs=1e-6)
    assert last["std"] == pytest.approx(np.std([0.923, 0.935], ddof=1), abs=1e-6)
    assert last["n"] == 2


def test_report_is_one_html_file_with_tables_and_embedded_figures(report_html):
    assert report_html.startswith("<!DOCTYPE html>")
    assert "<script" not in report_html and 'src="http' not in report_html and "<link" not in report_html
    assert report_html.count('<table class="mmbench-table table1">') == 1
    assert report_html.count('<table class="mmbench-table table2">') == 1
    images = IMG.findall(report_html)
    # avtoy: curves, imbalance, bars; mfeat: curves, imbalance, classifiers, bars
    assert len(images) == 7
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert report_html.count("<b>Classifiers per modality over epochs.</b>") == 1
    assert report_html.count("<b>Imbalance ratio over epochs.</b>") == 2
    assert "sustained_boost / seed 2: non-finite loss at epoch 3" in report_html
    assert ">2/3<" in report_html


def test_report_without_classifier_diagnostics_has_no_classifier_figure(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "d", "joint", seed, {"fusion": 0.8, "a": 0.6, "b": 0.5})
    html = build_report(load_results(tmp_path))
    assert len(IMG.findall(html)) == 3 and "Classifiers per modality" not in html


def test_table_cli_defaults_md_val_with_all_heads_metrics_and_seed_counts(results):
    out = CliRunner().invoke(cli, ["table", "--results", str(results)])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "### mfeat" in text and "### avtoy" in text
    for col in ("fusion Acc", "fusion MAP", "fusion MacroF1", "image Acc", "fourier MacroF1", "video MAP"):
        assert col in text
    assert "best validation epoch (val)" in text and " ± " in text
    assert "| sustained_boost | 2/3 |" in text and "| joint | 3 |" in text
    assert text.strip() == render_table(load_results(results)).strip()


def test_table_cli_layouts_formats_and_out_file(results, tmp_path):
    runner = CliRunner()
    out = runner.invoke(cli, ["table", "--results", str(results), "--layout", "table2", "--format", "latex",
                              "--select", "test-best", "--out", str(tmp_path / "t.tex")])
    assert out.exit_code == 0, out.output
    tex = (tmp_path / "t.tex").read_text()
    assert r"\toprule" in tex and "test-best: the papers' protocol" in tex
    out = runner.invoke(cli, ["table", "--results", str(results), "--format", "csv", "--metric", "f1",
                              "-d", "avtoy", "-m", "mla"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert lines[0] == "dataset,run,method,tag,seed,epoch,head,metric,value"
    assert len(lines) == 1 + 3 * 3  # 3 seeds x 3 heads
    out = runner.invoke(cli, ["table", "--results", str(results), "--layout", "long", "--seeds", "4"])
    assert out.exit_code == 0 and "| mfeat | joint | fusion | Acc | 3/4 |" in out.output


def test_report_cli_writes_the_html_file(results, tmp_path):
    target = tmp_path / "sub" / "report.html"
    out = CliRunner().invoke(cli, ["report", "--results", str(results), "--out", str(target), "-d", "avtoy"])
    assert out.exit_code == 0, out.output
    html = target.read_text()
    assert len(IMG.findall(html)) == 3 and "mfeat" not in html


def test_cli_without_records_says_what_to_do(tmp_path):
    for cmd in (["table"], ["report", "--out", str(tmp_path / "r.html")]):
        out = CliRunner().invoke(cli, [*cmd, "--results", str(tmp_path / "none")])
        assert out.exit_code == 2
        assert "no run records under" in out.output and "mmbench run" in out.output


def _latex_ready() -> bool:
    """pdflatex and the packages the templates use (Debian: texlive-latex-base, -recommended)."""
    if shutil.which("pdflatex") is None or shutil.which("kpsewhich") is None:
        return False
    styles = ["booktabs.sty", "xcolor.sty", "colortbl.sty", "graphicx.sty", "longtable.sty"]
    found = subprocess.run(["kpsewhich", *styles], capture_output=True, text=True, check=False).stdout.split()
    return len(found) == len(styles)


@pytest.mark.skipif(not _latex_ready(), reason="pdflatex or booktabs/xcolor/colortbl/longtable not installed")
@pytest.mark.parametrize("layout", ["table1", "table2", "long"])
def test_latex_table_compiles_with_pdflatex(results, tmp_path, layout):
    tex = render_table(load_results(results), "latex", layout=layout, standalone=True)
    (tmp_path / "t.tex").write_text(tex)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path, check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(report_html, tmp_path):
    probe = (
        "<script>document.body.setAttribute('data-tables', document.querySelectorAll('table').length);"
        "document.body.setAttribute('data-images', Array.from(document.images)"
        ".filter(i => i.complete && i.naturalWidth > 0).length);</script></body>"
    )
    page = tmp_path / "report.html"
    page.write_text(report_html.replace("</body>", probe))
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=False)
    assert 'data-tables="2"' in dom.stdout and 'data-images="7"' in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, cwd=tmp_path, check=True)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2400, 1200) and pixels.std() > 10  # not a blank page


def test_report_drawn_in_worker_processes_is_identical(results, report_html):
    assert build_report(load_results(results), jobs=2) == report_html
