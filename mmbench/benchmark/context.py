"""``Context``: what the harness hands a method's hooks and training step."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from mmbench.benchmark.seeding import stream_generator


class _Streams(dict):
    """The generators of ``Context.generator`` by (stream, device type); reseeded on every call,
    so a deep copy (the cost measurement's) starts empty instead of copying device generators."""

    def __deepcopy__(self, memo):
        return _Streams()


@dataclass
class Context:
    """Run state visible to a method.

    - ``epoch`` (0-indexed), ``epochs`` (budget), ``global_step``, ``step_in_epoch``;
    - ``device``, ``autocast()`` (bf16 autocast on CUDA by default, a no-op on CPU);
    - ``optimizers`` (a method may replace them, e.g. ReconBoost's fresh optimiser per stage);
    - ``train_loader`` (the training batches of this run, held-out slice excluded),
      ``heldout_loader`` (G-Blend's slice of train, ``None`` unless the method asks for one),
      ``val_loader`` (the selection split; for methods that need it, e.g. MSLR);
    - ``val_metrics`` (METRICS of this epoch, set before ``on_epoch_end``);
    - ``selectable``: set ``False`` in a hook to exclude this epoch from model selection;
    - ``log(key, value)`` per-step diagnostics (averaged over the epoch; tensors are not
      synchronised until the epoch ends) and ``log_epoch(key, value)`` per-epoch values;
    - ``generator(stream, index=None, device=None)``: the method's own random stream ``stream``
      (e.g. ``"opm/masks"``), a ``torch.Generator`` on ``device`` (default ``self.device``) seeded
      from (run seed, stream, ``index`` = ``global_step`` unless given: pass ``epoch`` for a
      per-epoch draw). Every call reseeds it: two calls with the same stream and step give the same
      numbers, so use one name per kind of draw. A resumed run draws exactly the same numbers;
    - ``skip_step()``: say, from ``training_step``, that this batch takes no optimiser step (no
      backward, no ``optimizers.step()``: OPM's batch with no sample left). The harness still
      counts the batch in ``global_step``/``step_in_epoch`` (random streams never repeat), leaves
      its returned values out of the epoch's ``train`` means and records ``skipped_steps`` in the
      epoch's diagnostics; schedulers step per epoch as usual.
    - ``feature_pass(split, fn=None)``: an eval-mode, no-grad pass over ``"train"``, ``"val"`` or
      ``"heldout"`` that leaves BN statistics, RNG streams and the epoch's shuffling untouched, and
      ``initial_encoder_state()``: the encoders' weights before the first step
      (``mmbench.benchmark.passes``).
    """

    model: torch.nn.Module
    optimizers: Any
    device: torch.device
    train_cfg: Any
    modalities: tuple[str, ...]
    num_classes: int
    seed: int
    epochs: int
    train_loader: Any = None
    heldout_loader: Any = None
    val_loader: Any = None
    amp_dtype: torch.dtype | None = None
    epoch: int = 0
    global_step: int = 0
    step_in_epoch: int = 0
    val_metrics: dict | None = None
    selectable: bool = True
    initial_encoders: Any = None  # passes.InitialEncoders, set by the trainer
    _step_logs: dict = field(default_factory=dict)
    _step_counts: dict = field(default_factory=dict)
    _epoch_logs: dict = field(default_factory=dict)
    _generators: dict = field(default_factory=_Streams, repr=False)
    _skipped: bool = False

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def log(self, key: str, value) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().float()
        self._step_logs[key] = self._step_logs.get(key, 0.0) + value
        self._step_counts[key] = self._step_counts.get(key, 0) + 1

    def log_epoch(self, key: str, value) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().tolist()
        self._epoch_logs[key] = value

    def generator(self, stream: str, index: int | None = None, device=None) -> torch.Generator:
        """The method-owned random stream ``stream`` at ``index`` (default ``global_step``), on
        ``device`` (default the run's): ``seeding.stream_generator``, one generator kept per stream
        and device type and reseeded on every call."""
        device = torch.device(self.device if device is None else device)
        key = (stream, device.type)
        index = self.global_step if index is None else index
        self._generators[key] = stream_generator(self.seed, stream, index, device, self._generators.get(key))
        return self._generators[key]

    def skip_step(self) -> None:
        """This batch takes no optimiser step (see the class docstring)."""
        self._skipped = True

    def take_skipped(self) -> bool:
        """Harness: whether the batch just trained called ``skip_step``; clears the flag."""
        skipped, self._skipped = self._skipped, False
        return skipped

    def feature_pass(self, split: str, fn=None) -> dict:
        from mmbench.benchmark.passes import split_pass

        return split_pass(self, split, fn)

    def initial_encoder_state(self) -> dict:
        if self.initial_encoders is None:
            raise RuntimeError("this context was built without the encoders' initial state")
        return self.initial_encoders.state()

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.step_in_epoch = 0
        self.val_metrics = None
        self.selectable = True
        self._step_logs, self._step_counts, self._epoch_logs = {}, {}, {}

    def collect_diagnostics(self) -> dict:
        out = {}
        for k, total in self._step_logs.items():
            mean = total / self._step_counts[k]
            out[k] = mean.tolist() if isinstance(mean, torch.Tensor) else float(mean)
        out.update(self._epoch_logs)
        return out
