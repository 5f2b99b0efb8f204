"""``mmbench table --layout probe``: probe metrics per modality beside the method-native ones
and the imbalance scores.

Reads run records and their ``probe.json`` only (``mmbench probe`` writes it). The first table is
the ranked one of ``aggregate.build_tables`` (mean ± std over seeds, best bold, top three shaded,
Welch's t-test marks): per dataset the native heads (``fusion`` and each modality, whatever the
method's per-modality logits are) and ``probe <m>`` / ``probe concat``, the test (or val) metrics
of the linear probes on the frozen encoders of the val-selected epoch, one recipe for every method.
The second table gives, per run, the probe-accuracy ratio (strongest over weakest modality) and the
Shapley contributions to the fused test accuracy in points (``mmbench/probe/shapley.py``).

Never silently wrong: probes exist only for the val rule (other rules are refused); runs without a
current ``probe.json`` (missing, or made from other weights) are listed under the table, not mixed
in; probes made with different recipes are refused.
"""

from __future__ import annotations

import copy
from pathlib import Path

from mmbench.probe.record import RULE, is_current, read_probe
from mmbench.reporting.aggregate import build_tables, run_facts, run_sort_key, template_env
from mmbench.reporting.simple_table import mean_std, render_plain
from mmbench.results.errors import MMBenchError

PROBE_PREFIX = "probe "
_TEMPLATE = {"md": "table.md.j2", "latex": "table.tex.j2", "html": "table.html.j2"}


def probed_records(records: list[dict]) -> tuple[list[tuple[dict, dict]], list[str]]:
    """``(record, probe)`` pairs of finished runs with a current probe, and labels of the others."""
    pairs, left_out = [], []
    for rec in records:
        if rec.get("status") != "finished":
            continue
        label = f"{rec['dataset']}/{rec['run']} seed {rec['seed']}"
        try:
            probe = read_probe(Path(rec["path"]))
        except MMBenchError as exc:  # a damaged probe.json is listed, the other runs still table
            left_out.append(f"{label}: {exc}")
            continue
        if probe is None:
            left_out.append(f"{label}: no probe.json (run `mmbench probe`)")
        elif not is_current(probe, rec):
            left_out.append(f"{label}: probe.json is from other weights (run `mmbench probe --rerun`)")
        else:
            pairs.append((rec, probe))
    recipes = {p["recipe_hash"] for _, p in pairs}
    if len(recipes) > 1:
        raise MMBenchError(
            f"the probes were made with {len(recipes)} different recipes ({', '.join(sorted(recipes))}); "
            "probe every run with one recipe (`mmbench probe --rerun`)"
        )
    return pairs, left_out


def with_probe_heads(rec: dict, probe: dict) -> dict:
    """A copy of ``rec`` whose val-rule metrics also hold ``probe <m>`` heads (val and test)."""
    out = copy.deepcopy(rec)
    sel = out["selection"][RULE]
    for split in ("val", "test"):
        for name, fit in probe["probes"].items():
            sel[split][PROBE_PREFIX + name] = fit[split]
    return out


def imbalance_rows(pairs) -> dict[str, list[list[str]]]:
    """Per dataset: rows ``run, n, ratio, Shapley per modality, degree, fused, all masked``."""
    by_run: dict[tuple, list[dict]] = {}
    for rec, probe in pairs:
        by_run.setdefault((rec["dataset"], rec["run"], rec.get("method")), []).append(probe)
    out: dict[str, list] = {}
    facts = run_facts([rec for rec, _ in pairs])
    ordered = sorted(by_run.items(), key=lambda kv: (kv[0][0], run_sort_key(kv[0][1], facts.get(kv[0][1]))))
    for (dataset, run, _), probes in ordered:
        mods = probes[0]["modalities"]
        sh = [p["imbalance"]["shapley"] for p in probes]
        row = [run, str(len(probes)), mean_std(p["imbalance"]["probe_ratio"]["value"] for p in probes)]
        row += [mean_std(100 * s["values"][m] for s in sh) for m in mods]
        row += [mean_std(s["degree"] for s in sh), mean_std(100 * s["fused"] for s in sh),
                mean_std(100 * s["all_masked"] for s in sh)]
        out.setdefault(dataset, {"modalities": mods, "rows": []})["rows"].append(row)
    return out


def render_probe(records: list[dict], fmt: str = "md", metrics=None, select: str = "val", split: str = "test",
                 expected=None, alpha: float = 0.05, standalone: bool = False, problems=()) -> str:
    if select != RULE:
        raise MMBenchError(f"probes are fitted on the weights the {RULE!r} rule selects; use --select {RULE}")
    pairs, left_out = probed_records(records)
    left_out += [p.line() for p in problems]
    if not pairs:
        why = f" ({len(left_out)} left out: {left_out[0]}{' ...' if len(left_out) > 1 else ''})" if left_out else ""
        raise MMBenchError(f"no run has a current probe.json{why}: run `mmbench probe` first")
    augmented = [with_probe_heads(r, p) for r, p in pairs]
    if fmt == "csv":
        from mmbench.reporting.aggregate import per_seed_csv

        return per_seed_csv(augmented, tuple(metrics) if metrics else ("acc", "map", "f1"), select, split)
    ctx = build_tables(augmented, "table1", metrics, select, split, expected, alpha)
    recipe = pairs[0][1]["recipe_hash"]
    ctx["notes"].append({"method": "probe *", "text": f"linear probe on the frozen encoders of the val-selected epoch, "
                         f"one recipe for every method (recipe {recipe}, mmbench/probe/recipe.py)"})
    ctx["standalone"] = standalone
    ctx["table"] = dict(ctx)
    ranked = template_env().get_template(_TEMPLATE[fmt]).render(**ctx)
    extra = []
    for dataset, block in imbalance_rows(pairs).items():
        headers = ["method", "n", "probe ratio"] + [f"Shapley {m} (pts)" for m in block["modalities"]]
        headers += ["Shapley degree", "fused acc", "all masked acc"]
        extra.append(render_plain(
            f"{dataset}: imbalance scores", headers, block["rows"], fmt,
            ["probe ratio: test probe Acc of the strongest over the weakest modality. Shapley: exact Shapley "
             "values of the modalities in the method's fused test Acc, masked modalities at their train-mean "
             "features; they sum to fused minus all-masked Acc. Degree: (max - min) / sum of |Shapley|."],
        ))
    if left_out:
        extra.append(render_plain("Runs left out of the probe tables", ["run"], [[x] for x in left_out], fmt))
    return _insert(ranked, "\n".join(extra), fmt)


def _insert(page: str, extra: str, fmt: str) -> str:
    """``extra`` after the ranked table (inside the body of a standalone HTML/LaTeX page)."""
    for end in ("</body>", r"\end{document}"):
        if end in page:
            head, tail = page.rsplit(end, 1)
            return head + extra + end + tail
    return page + "\n" + extra
