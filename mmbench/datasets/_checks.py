"""Small helpers shared by the ``check(root, cfg)`` of the NVGesture, Twitter-15 and Sarcasm loaders
(``mmbench data check``): problems that name paths and counts, a deterministic sample of files to
decode, and the ``deep`` / ``strict`` switches of ``mmbench data check``."""

from __future__ import annotations

from pathlib import Path

from mmbench.datasets.base import Problem

SAMPLE_PER_SPLIT = 20
SHOW = 10


def check_flags(cfg) -> tuple[bool, bool]:
    """(deep, strict): attributes ``deep`` / ``strict`` of the data config if the caller set them
    (``mmbench data check --deep --strict``), else ``options["check"]``; both default to False."""
    opts = (getattr(cfg, "options", None) or {}).get("check", {}) if cfg is not None else {}
    deep = bool(getattr(cfg, "check_deep", False) or getattr(cfg, "deep", False) or opts.get("deep", False))
    strict = bool(getattr(cfg, "strict", False) or opts.get("strict", False))
    return deep, strict


def root_layout(root, detect_layout, no_layout) -> tuple[Path | None, str | None, list[Problem]]:
    """(root, layout, problems) at the start of a ``check``: an error when ``root`` is not a
    directory or ``detect_layout(root)`` finds no layout (message ``no_layout(root)``); the
    caller returns ``problems`` when it is not empty."""
    if root is None or not Path(root).is_dir():
        return None, None, [Problem("error", f"data root {root} does not exist; pass --root DIR")]
    root = Path(root)
    layout = detect_layout(root)
    if layout is None:
        return root, None, [Problem("error", no_layout(root))]
    return root, layout, []


def duplicate_rows(rows, path, key: str, what: str, prefix: str = "") -> tuple[dict[str, str], list[Problem]]:
    """Rows of the index file ``path`` whose ``row[key]`` repeats an earlier row's. Returns
    ``{value: "path:line"}`` (the last row of each value) and one error listing the repeats as
    ``path:line <prefix><value>`` (``what`` names them: "ids", "samples"), if any."""
    seen, dups = {}, []
    for r in rows:
        if r[key] in seen:
            dups.append(f"{path}:{r['line']} {prefix}{r[key]}")
        seen[r[key]] = f"{path}:{r['line']}"
    if not dups:
        return seen, []
    return seen, [Problem("error", f"{len(dups)} duplicated {what} in {path}: {listing(dups)}")]


def in_train_and_test(seen: dict[str, dict[str, str]], what: str) -> list[Problem]:
    """One error listing the values of ``seen["train"]`` that are also in ``seen["test"]`` (the
    maps of ``duplicate_rows``), by their train location."""
    both = sorted(set(seen.get("train", {})) & set(seen.get("test", {})))
    if not both:
        return []
    return [Problem("error", f"{len(both)} {what} in both train and test: {listing(seen['train'][k] for k in both)}")]


def sample(items: list, deep: bool, k: int = SAMPLE_PER_SPLIT) -> list:
    """All items with ``deep``, else ``k`` evenly spaced ones (deterministic)."""
    if deep or len(items) <= k:
        return list(items)
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def listing(paths) -> str:
    paths = [str(p) for p in paths]
    more = f" (+{len(paths) - SHOW} more)" if len(paths) > SHOW else ""
    return ", ".join(paths[:SHOW]) + more


def dropping(cfg) -> bool:
    """``data.drop_missing`` as resolved so far (``None``: the dataset default, False here)."""
    return bool(getattr(cfg, "drop_missing", False))


def missing(what: str, paths: list, fix: str, drop: bool = False) -> list[Problem]:
    """One error for ``len(paths)`` missing files of one kind, listing the first 10; a warning
    when ``data.drop_missing`` is on (those samples are then skipped and counted)."""
    if not paths:
        return []
    if drop:
        return [Problem("warn", f"{len(paths)} {what} missing, their samples are dropped "
                                f"(data.drop_missing=true): {listing(paths)}")]
    return [Problem("error", f"{len(paths)} {what} missing: {listing(paths)}; {fix}, "
                             "or --set data.drop_missing=true to skip those samples")]


def count_mismatch(what: str, got, expected, strict: bool, extra: str = "") -> list[Problem]:
    """A warning (an error with ``strict``) when a count differs from the published one."""
    if got == expected:
        return []
    level = "error" if strict else "warn"
    return [Problem(level, f"{what}: {got}, published {expected}{extra} (a subset or fixture is fine; "
                           "--strict makes this an error)", kind="count")]


def verify_image(path: Path) -> str | None:
    """``None`` if PIL can ``verify()`` the file, else the reason."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a finding
        return f"{type(exc).__name__}: {exc}"
    return None


def unreadable_images(paths, deep: bool, what: str, root: Path | None = None) -> list[Problem]:
    """Every image (``deep``; a sample of 20 otherwise) decoded in full, in parallel, skipping
    those verified before (``media_check``); one error per file that fails."""
    from mmbench.datasets import media_check

    chosen = [Path(p) for p in sample([p for p in paths if Path(p).is_file()], deep)]
    if not chosen:
        return []
    failed = media_check.verify([(p, "image") for p in chosen], root or chosen[0].parent)
    return [Problem("error", f"unreadable {what} {p}: {why.removeprefix(f'{p}: ')}; replace the file")
            for p, why in sorted(failed.items(), key=lambda kv: str(kv[0]))]


def collapse_counts(problems: list[Problem], dataset: str) -> list[Problem]:
    """The count and fingerprint warnings (kind ``"count"``) folded into one line, so a subset
    or fixture run prints one warning instead of one per split, class list and fingerprint;
    ``mmbench data check --strict`` still lists each of them as an error."""
    counts = [p for p in problems if p.kind == "count" and p.level != "error"]
    if len(counts) <= 1:
        return list(problems)
    first = counts[0].message.split(" (a subset or fixture is fine")[0]
    line = Problem("warn", f"{len(counts)} counts or fingerprints differ from the published {dataset} split "
                           f"(first: {first}); a subset or fixture is fine, `mmbench data check {dataset} --strict` "
                           "lists each", kind="count")
    at = problems.index(counts[0])
    return [p for p in problems[:at]] + [line] + [p for p in problems[at:] if p not in counts]
