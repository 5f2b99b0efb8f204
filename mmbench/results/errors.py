"""User-facing errors (the bottom layer: imports nothing of mmbench): the CLI prints them as one line (``error: ...``) and exits non-zero."""

from __future__ import annotations


class MMBenchError(Exception):
    """A problem the user can fix; its message says what to do."""


class ConfigError(MMBenchError):
    """Unknown or malformed configuration key or value."""


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

    def __init__(self, epoch: int, key: str = "loss"):
        super().__init__(f"non-finite {key} at epoch {epoch}")
        self.epoch = epoch
