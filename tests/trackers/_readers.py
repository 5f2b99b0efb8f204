"""Read logged scalars back with each tracker's own reader, for comparison with history.jsonl."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def tensorboard_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} over every event file of ``logdir`` (TensorBoard's
    EventAccumulator, as ``tensorboard --logdir`` reads it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    out = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    texts = {tag: [e for e in acc.Tensors(tag)] for tag in acc.Tags().get("tensors", [])}
    return out, texts


_BLOCK = 32768  # the W&B transaction log is LevelDB's log format: 32 KiB blocks of framed records


def _wandb_records(path: Path):
    data = path.read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B", f"{path} is not a W&B transaction log"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            yield buf + chunk
            buf = b""


def wandb_offline_runs(wandb_dir, run_id: str) -> list[dict]:
    """Each offline run folder of ``run_id`` (oldest first): its ``run`` record (config, group,
    tags) and its history steps [(step, {key: value})], decoded with wandb's protobuf schema."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = []
    for folder in sorted(Path(wandb_dir).glob(f"wandb/offline-run-*-{run_id}")):
        (log,) = folder.glob("run-*.wandb")
        run, steps = None, []
        for data in _wandb_records(log):
            rec = pb.Record()
            rec.ParseFromString(data)
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                run = {
                    "id": rec.run.run_id,
                    "group": rec.run.run_group,
                    "tags": list(rec.run.tags),
                    "config": {i.key: json.loads(i.value_json) for i in rec.run.config.update},
                }
            elif kind == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
                steps.append(
                    (rec.history.step.num, {k: v for k, v in items.items() if not k.startswith("_")})
                )
        out.append({"folder": folder, "run": run, "steps": steps})
    return out


def open_mlflow_run(root: str, seed: int, answers) -> None:
    """In a spawned process (a pool worker): open an MLflow tracker run on ``root``'s default
    store and log one step; put ``("ok", seed, run_id)`` or ``("error", seed, message)``."""
    try:
        from mmbench.trackers.backends import MlflowTracker
        from mmbench.trackers.replay import RunInfo

        info = RunInfo(
            Path(root) / "mfeat" / "joint" / f"seed-{seed}",
            Path(root),
            "mfeat",
            "joint",
            "joint",
            None,
            seed,
            "abc",
            {"train": {"epochs": 2}},
        )
        tracker = MlflowTracker()
        tracker.open(info, None)
        tracker.log(0, {"test/fusion/acc": 0.5})
        answers.put(("ok", seed, tracker.run_id))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        answers.put(("error", seed, f"{type(exc).__name__}: {str(exc)[:200]}"))
