"""User-facing errors: the CLI prints them as one line (``error: ...``) and exits non-zero."""


class MMBenchError(Exception):
    """A problem the user can fix; its message says what to do."""


class ConfigError(MMBenchError):
    """Unknown or malformed configuration key or value."""


class DataError(MMBenchError):
    """The data root is missing or does not match the dataset's layout."""


class NonFiniteLossError(MMBenchError):
    """Training produced a NaN or inf loss."""

    def __init__(self, epoch: int, key: str = "loss"):
        super().__init__(f"non-finite {key} at epoch {epoch}")
        self.epoch = epoch
