"""The harness's extra passes (mmbench.benchmark.passes): a feature pass from an epoch hook leaves
BN statistics, every RNG stream and the epoch's shuffling untouched; the encoders' initial
weights are re-derived exactly, in a fresh and in a resumed run, without touching the RNG."""

import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from mmbench.benchmark.config import resolve_config
from mmbench.benchmark.loaders import EpochLoader
from mmbench.benchmark.registry import get_dataset, get_method
from mmbench.benchmark.seeding import rng_state
from mmbench.benchmark.trainer import build_run

DATA = {"data.limit_train_per_class": 10, "epochs": 2, "batch_size": 16}


def _run(method="joint", ckpt=None):
    cfg = resolve_config("mfeat", method, DATA, device="cpu")
    return build_run(cfg, get_dataset("mfeat"), get_method(method), None, torch.device("cpu"), ckpt)


def _states_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a) and set(a) == set(b)


def test_feature_pass_returns_each_encoders_features_in_split_order_with_labels():
    run = _run()
    feats = run.ctx.feature_pass("val")
    data = run.val_loader.dataset
    with torch.no_grad():
        run.model.eval()
        want = {m: run.model.encoders[m](data.tensors[m]) for m in run.ctx.modalities}
    for m in run.ctx.modalities:
        torch.testing.assert_close(feats[m], want[m])
    assert torch.equal(feats["label"], data.labels) and torch.equal(feats["index"], data.indices)
    assert len(run.ctx.feature_pass("train")["label"]) == len(run.train_loader.dataset)
    with pytest.raises(ValueError, match="not 'test'"):
        run.ctx.feature_pass("test")


def test_feature_pass_leaves_batchnorm_statistics_and_train_mode_untouched():
    run = _run()
    m = run.ctx.modalities[0]
    d = run.ctx.train_loader.dataset.tensors[m]
    dim = run.model.encoders[m](d[:2]).shape[1]
    run.model.encoders[m] = nn.Sequential(run.model.encoders[m], nn.BatchNorm1d(dim))
    run.model.train()
    run.model.encoders[m][1].running_mean.fill_(0.5)
    before = {k: v.clone() for k, v in run.model.encoders[m][1].state_dict().items()}
    run.model.heads.eval()  # a mixed mode is restored as it was
    run.ctx.feature_pass("train")
    after = run.model.encoders[m][1].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert run.model.encoders[m].training and not run.model.heads.training


def test_feature_pass_restores_every_rng_stream_even_when_its_function_draws():
    run = _run()
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    before = rng_state()

    def drawing(batch):  # an augmentation-like draw from every stream
        torch.rand(3), np.random.rand(3), random.random()
        if torch.cuda.is_available():
            torch.rand(3, device="cuda")
        return {"x": batch["label"].float()}

    run.ctx.feature_pass("train", drawing)
    after = rng_state()
    assert torch.equal(before["torch"], after["torch"])
    assert before["python"] == after["python"]
    assert all(np.array_equal(a, b) for a, b in zip(before["numpy"], after["numpy"]))
    if torch.cuda.is_available():
        assert all(torch.equal(a, b) for a, b in zip(before["cuda"], after["cuda"]))


class _PlainDataset(Dataset):
    """mfeat items one at a time: the harness batches it through a DataLoader (RandomSampler)."""

    def __init__(self, data):
        self.data = data
        self.labels = data.labels.tolist()

    def __len__(self):
        return len(self.data.labels)

    def __getitem__(self, i):
        return {
            **{m: t[i] for m, t in self.data.tensors.items()},
            "label": self.data.labels[i],
            "index": self.data.indices[i],
        }


@pytest.mark.parametrize("kind", ["in_memory", "dataloader"])
def test_feature_pass_mid_epoch_leaves_this_and_the_next_epochs_shuffling_untouched(kind):
    run = _run()
    data = run.train_loader.dataset
    if kind == "dataloader":
        data = _PlainDataset(data)

    def orders(with_pass):
        loader = EpochLoader(data, 16, True, seed=3)
        run.ctx.train_loader = loader
        out = []
        for epoch in (0, 1):
            loader.set_epoch(epoch)
            for i, batch in enumerate(loader):
                out.append(batch["index"].clone())
                if with_pass and i == 1:
                    run.ctx.feature_pass("train")
        return out

    plain, passed = orders(False), orders(True)
    assert len(plain) == len(passed) and all(torch.equal(a, b) for a, b in zip(plain, passed))


def test_initial_encoder_state_is_the_built_weights_in_fresh_and_resumed_runs():
    run = _run("joint")
    built = {
        m: {k: v.clone() for k, v in run.model.encoders[m].state_dict().items()} for m in run.ctx.modalities
    }
    with torch.no_grad():
        for p in run.model.parameters():
            p.add_(1.0)  # training moved the weights
    torch.manual_seed(11)
    before = torch.get_rng_state()
    init = run.ctx.initial_encoder_state()
    assert torch.equal(before, torch.get_rng_state())
    assert all(_states_equal(built[m], init[m]) for m in run.ctx.modalities)
    ckpt = {"method": {}, "model": run.model.state_dict(), "optimizers": run.ctx.optimizers.state_dict()}
    resumed = _run("joint", ckpt)
    assert not _states_equal(
        built[run.ctx.modalities[0]], resumed.model.encoders[run.ctx.modalities[0]].state_dict()
    )
    init2 = resumed.ctx.initial_encoder_state()
    assert all(_states_equal(built[m], init2[m]) for m in run.ctx.modalities)
