"""Per-epoch item plans (mmbench.benchmark.plan): the harness shuffles a method's (position,
kept modalities) list with the epoch's seeded generator, batches it with a ``keep`` mask, reads
items as the plain loader does, and a batch's ``index`` maps back to train positions."""

import torch
from torch.utils.data import Dataset

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.loaders import EpochLoader
from mmbench.benchmark.plan import ItemPlan, planned_loader, train_positions
from mmbench.benchmark.registry import get_dataset, get_method
from mmbench.benchmark.trainer import build_run


def _train_set():
    cfg = resolve_config("mfeat", "joint", {"data.limit_train_per_class": 5}, device="cpu")
    return get_dataset("mfeat").build("train", None, True, cfg.data)


class _Plain(Dataset):
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data.labels)

    def __getitem__(self, i):
        return {
            **{m: t[i] for m, t in self.data.tensors.items()},
            "label": self.data.labels[i],
            "index": self.data.indices[i],
        }


def _epoch(data, plan, epoch, seed=3):
    loader = EpochLoader(data, 8, True, seed=seed)
    loader.set_epoch(epoch)
    return list(planned_loader(loader, plan, 2))


def test_plan_items_are_all_trained_once_each_with_their_keep_mask_in_a_seeded_order():
    data = _train_set()
    n = len(data)
    plan = ItemPlan.build(
        [(p, ("image", "fourier")) for p in range(n)] + [(3, ("image",))] * 3 + [(5, ("fourier",))],
        ("image", "fourier"),
    )
    batches = _epoch(data, plan, 1)
    idx = torch.cat([b["index"] for b in batches])
    keep = torch.cat([b["keep"] for b in batches])
    assert len(idx) == n + 4 and sum(len(b["label"]) for b in batches) == n + 4
    got = sorted(zip(idx.tolist(), map(tuple, keep.int().tolist())))
    ids = data.indices.tolist()
    want = sorted([(i, (1, 1)) for i in ids] + [(ids[3], (1, 0))] * 3 + [(ids[5], (0, 1))])
    assert got == want
    for b in batches:  # the items are the dataset's own (same tensors as the plain loader reads)
        pos = train_positions_of(data, b["index"])
        assert torch.equal(b["image"], data.tensors["image"][pos])
    again, other = _epoch(data, plan, 1), _epoch(data, plan, 2)
    assert all(torch.equal(a["index"], b["index"]) for a, b in zip(batches, again))
    assert not all(torch.equal(a["index"], b["index"]) for a, b in zip(batches, other))


def train_positions_of(data, index):
    lookup = {int(i): p for p, i in enumerate(data.indices.tolist())}
    return torch.tensor([lookup[int(i)] for i in index])


def test_dataloader_path_gives_the_same_batches_as_the_in_memory_path():
    data = _train_set()
    plan = ItemPlan.build(
        [(p, ("image",) if p % 3 else ("image", "fourier")) for p in range(len(data))], ("image", "fourier")
    )
    a, b = _epoch(data, plan, 4), _epoch(_Plain(data), plan, 4)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x["index"], y["index"]) and torch.equal(x["keep"], y["keep"])
        assert torch.equal(x["fourier"], y["fourier"])


def test_no_plan_is_the_plain_loader_and_a_bad_plan_is_refused():
    data = _train_set()
    loader = EpochLoader(data, 8, True, seed=3)
    assert planned_loader(loader, None, 2) is loader
    bad = ItemPlan(torch.tensor([len(data)]), torch.ones(1, 2, dtype=torch.bool))
    try:
        planned_loader(loader, bad, 2)
    except ValueError as exc:
        assert "outside" in str(exc)
    else:
        raise AssertionError("a position past the train set must be refused")


def test_index_maps_back_to_train_positions_after_a_held_out_carve():
    cfg = resolve_config(
        "mfeat", "lfm", {"data.limit_train_per_class": 5, "method.alpha_mode": "learnable"}, device="cpu"
    )
    run = build_run(cfg, get_dataset("mfeat"), get_method("lfm"), None, torch.device("cpu"))
    ds = run.train_loader.dataset
    feats = run.ctx.feature_pass("train")  # row p = train position p
    pos = train_positions(run.ctx, feats["index"][[4, 0, 7]])
    assert pos.tolist() == [4, 0, 7]
    assert not torch.equal(ds.indices, torch.arange(len(ds)))  # the carve made ids and positions differ
