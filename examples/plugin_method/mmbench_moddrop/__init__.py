"""mmbench-moddrop: the ModDrop method as an mmbench plugin (see README.md)."""

from mmbench_moddrop.moddrop import ModDrop

__all__ = ["ModDrop"]
