"""Memory for whole batches built by a dataset's ``get_batch`` (decoded cache, decode path).

``batch_tensor`` allocates a batch as ``default_collate`` would: in shared memory inside a
DataLoader worker (so it reaches the main process without another copy), and in the main
process from ``Recycled`` pools, since fresh memory for a large batch costs page faults of about
the same time as filling it.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import torch
from torch.utils.data import get_worker_info


def batch_tensor(shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised batch tensor: in shared memory inside a DataLoader worker (as
    ``default_collate`` allocates it), else recycled memory (``_RECYCLED``)."""
    if get_worker_info() is None:
        return _RECYCLED.tensor(shape, dtype)
    numel = int(np.prod(shape))
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel)
    return torch.empty(0, dtype=dtype).new(storage).resize_(shape)


class Recycled:
    """Batch memory reused once nothing refers to it any more. Fresh memory for a 120 MB batch
    costs the kernel about as much as building the batch (page faults: ~30 ms for the 82 MB audio
    of a ``paper`` CREMA-D batch on the 2-core CPU box). A batch tensor is ``torch.from_numpy`` of
    an array kept here; the tensor, its views and ``.numpy()`` all hold that array, so when its
    reference count is back to the pool's own, no batch uses it and it is overwritten (every
    element: ``get_batch`` writes all of them). At most ``per_shape`` arrays a shape and
    ``max_bytes`` in all (a ``paper`` train batch of 64 pools; eval batches of 512 do not);
    beyond that batches get fresh memory."""

    def __init__(self, per_shape: int = 2, max_bytes: int = 512 * 2**20):
        self.per_shape, self.max_bytes = per_shape, max_bytes
        self.pools: dict = {}
        self.bytes = 0
        self.lock = threading.Lock()
        self.idle = max(self._counts([np.empty(0)]))  # the count of an array only the pool holds

    @staticmethod
    def _counts(pool: list) -> list[int]:
        return [sys.getrefcount(arr) for arr in pool]  # the list's reference, ``arr``'s, the argument's

    def tensor(self, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        key = (tuple(int(n) for n in shape), dtype)
        with self.lock:
            pool = self.pools.setdefault(key, [])
            for arr, count in zip(pool, self._counts(pool)):
                if count <= self.idle:
                    return torch.from_numpy(arr)
            arr = np.empty(key[0], dtype=torch.empty(0, dtype=dtype).numpy().dtype)
            if len(pool) < self.per_shape and self.bytes + arr.nbytes <= self.max_bytes:
                pool.append(arr)
                self.bytes += arr.nbytes
            return torch.from_numpy(arr)


_RECYCLED = Recycled()


def label_tensors(rows) -> dict:
    """``label`` and ``index`` of a batch's rows as int64 tensors, as ``default_collate`` makes them."""
    return {
        "label": torch.tensor([r.label for r in rows], dtype=torch.int64),
        "index": torch.tensor([r.index for r in rows], dtype=torch.int64),
    }
