"""``mmbench probe``, ``sweep --probe`` and ``table --layout probe|cost`` end to end on real runs."""

import json

import pytest

from mmbench.benchmark import store

from conftest import TINY, invoke

SETS = [x for s in TINY for x in ("--set", s)]


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """joint and mla trained (2 seeds of joint) and probed through the CLI. ``--jobs 1``: the two
    tiny seeds train in this process (the default would start a pool of spawned workers, each
    importing torch, for about a second of training)."""
    root = tmp_path_factory.mktemp("results")
    for method, seeds in (("joint", "2"), ("mla", "1")):
        r = invoke("run", "-m", method, "-d", "mfeat", "--seeds", seeds, "--jobs", "1", "--results", str(root), *SETS,
                   "--no-progress")
        assert r.exit_code == 0, r.output
    r = invoke("probe", "--results", str(root))
    assert r.exit_code == 0, r.output
    return root, r.output


def test_probe_cli_probes_every_finished_run_then_skips_current_ones(probed):
    root, output = probed
    assert "probes: 3 written, 0 current, 0 failed" in output
    again = invoke("probe", "--results", str(root), "--method", "joint")
    assert again.exit_code == 0 and "probes: 0 written, 2 current, 0 failed" in again.output
    assert len(list(root.glob(f"mfeat/*/seed-*/{store.PROBE}"))) == 3


def test_probe_table_puts_probe_metrics_beside_the_native_ones(probed):
    root, _ = probed
    r = invoke("table", "--results", str(root), "--layout", "probe", "--metric", "acc")
    assert r.exit_code == 0, r.output
    header = next(line for line in r.output.splitlines() if line.startswith("| method"))
    assert header.split("|")[3:9] == [" fusion ", " image ", " fourier ", " probe image ", " probe fourier ",
                                       " probe concat "]
    assert "imbalance scores" in r.output and "Shapley image (pts)" in r.output
    joint_run = next(p for p in root.glob("mfeat/joint*/seed-0"))
    acc = store.read_json(joint_run / store.PROBE)["probes"]["image"]["test"]["acc"]
    joint_row = next(line for line in r.output.splitlines() if line.startswith("| joint"))
    assert joint_row.split("|")[2].strip() == "2"
    mean = sum(store.read_json(p / store.PROBE)["probes"]["image"]["test"]["acc"]
               for p in root.glob("mfeat/joint*/seed-*")) / 2
    assert f"{100 * mean:.2f} ±" in joint_row.split("|")[6]
    assert acc > 0
    for fmt in ("latex", "html", "csv"):
        assert invoke("table", "--results", str(root), "--layout", "probe", "--format", fmt).exit_code == 0


def test_probe_table_refuses_other_rules_and_names_a_damaged_probe_file(probed, tmp_path):
    root, _ = probed
    r = invoke("table", "--results", str(root), "--layout", "probe", "--select", "last")
    assert r.exit_code == 2 and "use --select val" in r.output
    copy_root = tmp_path / "copy"
    import shutil

    shutil.copytree(root, copy_root)
    mla = next(copy_root.glob("mfeat/mla*/seed-0"))
    (mla / store.PROBE).write_text("{broken")
    r = invoke("table", "--results", str(copy_root), "--layout", "probe")  # listed; the other runs still table
    assert r.exit_code == 0 and str(mla / store.PROBE) in r.output and "--rerun" in r.output
    assert "Traceback" not in r.output and "Runs left out" in r.output
    (mla / store.PROBE).unlink()
    r = invoke("table", "--results", str(copy_root), "--layout", "probe")
    assert r.exit_code == 0 and "no probe.json (run `mmbench probe`)" in r.output


def test_cost_table_is_relative_to_joint(probed):
    root, _ = probed
    r = invoke("table", "--results", str(root), "--layout", "cost")
    assert r.exit_code == 0, r.output
    rows = {line.split("|")[1].strip(): line.split("|") for line in r.output.splitlines() if line.startswith("| ")}
    joint = next(k for k in rows if k.startswith("joint"))
    mla = next(k for k in rows if k.startswith("mla"))
    assert rows[joint][4].strip() == "1.00"  # params ×joint
    records = {rec["method"]: rec for rec in store.load_results(root)}
    ratio = records["mla"]["cost"]["params"]["total"] / records["joint"]["cost"]["params"]["total"]
    assert rows[mla][4].strip() == f"{ratio:.2f}"
    csv = invoke("table", "--results", str(root), "--layout", "cost", "--format", "csv").output
    assert csv.splitlines()[0].startswith("dataset,method,n,params (k),×joint")


def test_sweep_probe_probes_each_finished_run(tmp_path):
    suite = tmp_path / "one.toml"
    suite.write_text('[suite]\nseeds = 1\ndatasets = ["mfeat"]\nmethods = ["joint"]\n'
                     'set = { epochs = 2, "data.limit_train_per_class" = 20 }\n')
    r = invoke("sweep", str(suite), "--results", str(tmp_path / "res"), "--probe")
    assert r.exit_code == 0, r.output
    assert "probes: 1 written" in r.output
    probe = json.loads(next((tmp_path / "res").glob(f"mfeat/*/seed-0/{store.PROBE}")).read_text())
    assert set(probe["probes"]) == {"image", "fourier", "concat"}
    r = invoke("sweep", str(suite), "--results", str(tmp_path / "res"), "--launcher", "slurm", "--probe")
    assert r.exit_code == 2 and "--wait" in r.output
