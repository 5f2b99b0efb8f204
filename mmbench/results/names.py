"""Path-safe names: every user string that becomes part of a path under the results root.

A run folder is ``<results>/<dataset>/<method>[-<tag>]/seed-<n>``. ``check_tag`` refuses a tag
that could leave that layout (``..``, ``/``, a leading dot or dash, control characters, a
newline) or exceed the file system's 255-byte name limit, before anything is written;
``short_auto_tag`` keeps a tag made from many overrides under the limit (a readable prefix and
a hash of the whole). ``store.run_dir`` refuses any run folder that is not exactly three plain
parts under the results root.
"""

from __future__ import annotations

import hashlib
import re

from mmbench.results.errors import ConfigError

TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")
MAX_TAG = 120  # characters (ASCII): "<method>-<tag>" stays far below the 255-byte name limit


def check_tag(tag: str | None) -> None:
    """Refuse a ``--tag`` that is not one path-safe folder-name part (one line, ``ConfigError``)."""
    if tag is None:
        return
    if not isinstance(tag, str) or not tag:
        raise ConfigError("--tag must be a non-empty name, e.g. --tag lr0.01")
    shown = repr(tag if len(tag) <= 40 else tag[:40] + "...")
    if len(tag) > MAX_TAG:
        raise ConfigError(f"--tag {shown} is {len(tag)} characters long; use at most {MAX_TAG}")
    if not TAG_PATTERN.fullmatch(tag):
        raise ConfigError(
            f"--tag {shown} is not a safe folder name: use letters, digits and . _ + = - only, starting with a "
            "letter or digit (no '/', '..', spaces or control characters)"
        )


def short_auto_tag(tag: str | None) -> str | None:
    """An automatic tag (named after the overrides) that fits ``MAX_TAG``: longer ones keep their
    first characters and end in 8 hex digits of the sha256 of the whole tag."""
    if tag is None or len(tag) <= MAX_TAG:
        return tag
    digest = hashlib.sha256(tag.encode()).hexdigest()[:8]
    return f"{tag[: MAX_TAG - 9].rstrip('_')}_{digest}"
