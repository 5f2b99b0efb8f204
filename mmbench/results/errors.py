"""User-facing errors (the bottom layer: imports nothing of mmbench): the CLI prints them as one line (``error: ...``) and exits non-zero."""

from __future__ import annotations


class MMBenchError(Exception):
    """A problem the user can fix; its message says what to do."""


class ConfigError(MMBenchError):
    """Unknown or malformed configuration key or value."""


class DiskError(MMBenchError):
    """A file could not be written (read-only or full disk, a path that is a file, a name too
    long). The CLI prints the one line and exits 1, as for a failed run."""

    exit_code = 1

    @classmethod
    def of(cls, path, exc: BaseException, what: str = "write") -> DiskError:
        from pathlib import Path

        why = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:120]
        folder = Path(path).parent
        if getattr(exc, "errno", None) == 36:  # ENAMETOOLONG
            return cls(f"cannot {what} {str(path)[:80]}... ({why}): choose a shorter --results / --out path")
        for above in Path(path).parents:  # a file where a folder should be
            try:
                if not above.exists():
                    continue
            except OSError:
                continue
            if not above.is_dir():
                return cls(f"cannot {what} {path}: {above} is a file, not a folder; choose another path "
                           "(--results / --out)")
            break
        return cls(f"cannot {what} {path} ({why}): free space on that disk, make {folder} writable, or choose "
                   "another path (--results / --out)")


class DataError(MMBenchError):
    """The data root is missing or does not match the dataset's layout."""


class MediaError(DataError):
    """A media file (wav, jpg, npy, ...) could not be decoded while building an item. One
    string argument, so it survives the re-raise from a DataLoader worker."""

    FIX = "run `mmbench data check --deep` to list every damaged file, then replace or remove it"

    @classmethod
    def of(cls, path, exc: BaseException) -> MediaError:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        what = type(exc).__name__ + (f": {detail}" if detail and "str() failed" not in detail else "")
        return cls(f"cannot decode {path} ({what}); {cls.FIX}")

    @staticmethod
    def one_line(exc: BaseException) -> str:
        """The message, also when a DataLoader worker wrapped it in its traceback text (the
        last line then reads ``mmbench.results.errors.MediaError: <message>``)."""
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else ""
        for prefix in ("mmbench.results.errors.MediaError: ", "mmbench.errors.MediaError: "):
            if last.startswith(prefix):
                return last[len(prefix):]
        return last


class NonFiniteLossError(MMBenchError):
    """Training produced a NaN or inf loss."""

    def __init__(self, epoch: int, key: str = "loss", hint: str = ""):
        super().__init__(f"non-finite {key} at epoch {epoch}" + (f"; {hint}" if hint else ""))
        self.epoch = epoch


def one_line(exc: BaseException) -> str:
    """The message of ``exc``; when a DataLoader worker wrapped it in its traceback text, the
    original message (the last line, ``mmbench.errors.<Error>: <message>``)."""
    text = str(exc).strip()
    if "Traceback (most recent call last)" not in text:
        return text
    last = [ln for ln in text.splitlines() if ln.strip()][-1]
    head, sep, rest = last.partition(": ")
    return rest if sep and head.startswith("mmbench.errors.") else last
