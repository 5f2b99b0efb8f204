"""Batch loaders the trainer iterates: one pass per epoch, shuffled by a generator that is a pure
function of (run seed, epoch), so resumed runs see the same batches as uninterrupted ones.

In-memory datasets (``TensorDictDataset``) are batched by indexing whole tensors; everything
else goes through ``torch.utils.data.DataLoader`` with seeded workers. A dataset with
``get_batch(indices) -> dict`` (the decoded audio-visual cache) is asked for whole batches: the
DataLoader runs over a ``BatchSampler`` with ``batch_size=None``, so each worker returns a batch
built at once instead of collating item by item; the sampler, its generator and the worker seeds
are the ones a plain DataLoader uses, so the order and the random draws are unchanged.

A dataset with a ``device_transform`` (the cache with ``data.cache.augment = "device"``) hands
over batches as stored; given the training ``device``, the loader moves each one there (pinned
memory, non-blocking) and applies the transform to the whole batch, drawing from
``augment_generator(seed, epoch)`` in the main process, so the batches it yields are model-ready,
their crops and flips do not depend on the number of workers, and a resumed epoch repeats them.

Worker RNGs are seeded from the epoch's generator when the epoch's workers start, so without
persistent workers an epoch's augmentation is a pure function of (seed, epoch) and a resumed run
repeats it exactly; persistent workers (the CUDA default) carry their RNG state across epochs,
trading that for speed.
"""

from __future__ import annotations

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from mmbench.benchmark.seeding import augment_generator, epoch_generator, worker_init_fn
from mmbench.datasets.base import as_built
from mmbench.methods.base import to_device  # noqa: F401 - the harness moves batches as methods do


class EpochLoader:
    def __init__(
        self,
        dataset,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        device: torch.device | str | None = None,
    ):
        self.dataset = dataset = as_built(dataset)
        self._options = {"num_workers": num_workers, "pin_memory": pin_memory, "device": device}
        self.device = torch.device(device) if device is not None else None
        self.device_transform = dataset.device_transform
        self._augment_generator = augment_generator(seed, 0)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.in_memory = dataset.in_memory
        self._generator = torch.Generator()
        self._loader = None
        if not self.in_memory and dataset.builds_batches:
            # what DataLoader(batch_size=..., shuffle=..., generator=...) builds, fetched a batch at a time
            sampler = RandomSampler(dataset, generator=self._generator) if shuffle else SequentialSampler(dataset)
            self._loader = DataLoader(
                _Batches(dataset),
                batch_size=None,
                sampler=BatchSampler(sampler, batch_size, drop_last),
                num_workers=num_workers,
                pin_memory=pin_memory,
                worker_init_fn=worker_init_fn,
                generator=self._generator,
                persistent_workers=persistent_workers and num_workers > 0,
            )
        elif not self.in_memory:
            self._loader = DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=shuffle,
                drop_last=drop_last,
                num_workers=num_workers,
                pin_memory=pin_memory,
                worker_init_fn=worker_init_fn,
                generator=self._generator,
                persistent_workers=persistent_workers and num_workers > 0,
            )

    def sequential(self, batch_size: int) -> EpochLoader:
        """A new unshuffled loader over the same dataset (same workers and device, non-persistent
        workers): an extra pass that leaves this loader's generator and workers untouched."""
        return EpochLoader(self.dataset, batch_size, False, self.seed, **self._options)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._generator.manual_seed(epoch_generator(self.seed, epoch).initial_seed())
        self._augment_generator = augment_generator(self.seed, epoch)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        if self.device_transform is not None:
            for batch in self._loader:
                yield self.device_transform(to_device(batch, self.device or torch.device("cpu")), self._augment_generator)
            return
        if not self.in_memory:
            yield from self._loader
            return
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, self.epoch))
        else:
            order = torch.arange(n)
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield self.dataset.batch(order[start : start + self.batch_size])


class _Batches(Dataset):
    """``dataset.get_batch`` as a dataset indexed by a list of item positions."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices) -> dict:
        return self.dataset.get_batch(indices)


class PlannedEpoch:
    """One epoch over a method's item plan (``mmbench.benchmark.plan``): the plan's items shuffled
    by the epoch's generator (the one ``set_epoch`` seeded, so the order is a pure function of
    (seed, epoch)), batched at the loader's batch size, each batch with ``keep`` (B x M bool,
    modality order). Items are read exactly as the plain loader reads them (same dataset, same
    transforms, same worker seeding)."""

    def __init__(self, loader: EpochLoader, positions: torch.Tensor, keep: torch.Tensor):
        self.loader = loader
        order = torch.randperm(len(positions), generator=epoch_generator(loader.seed, loader.epoch))
        self.positions = positions[order]
        self.keep = keep[order]
        n, b = len(self.positions), loader.batch_size
        stop = (n // b) * b if loader.drop_last else n
        self.chunks = [(s, min(s + b, stop)) for s in range(0, stop, b)]

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self):
        for (s, e), batch in zip(self.chunks, self._batches()):
            batch["keep"] = self.keep[s:e].to(batch["label"].device)
            yield batch

    def _batches(self):
        ld, ds = self.loader, self.loader.dataset
        lists = [self.positions[s:e].tolist() for s, e in self.chunks]
        if ld.in_memory:
            for items in lists:
                yield ds.batch(torch.as_tensor(items, dtype=torch.long))
            return
        opts = ld._options
        common = {
            "num_workers": opts["num_workers"],
            "pin_memory": opts["pin_memory"],
            "worker_init_fn": worker_init_fn,
            "generator": ld._generator,
        }
        if ds.builds_batches:
            loader = DataLoader(_Batches(ds), batch_size=None, sampler=lists, **common)
        else:
            loader = DataLoader(ds, batch_sampler=lists, **common)
        for batch in loader:
            if ld.device_transform is not None:
                batch = to_device(batch, ld.device or torch.device("cpu"))
                batch = ld.device_transform(batch, ld._augment_generator)
            yield batch
