"""mmbench: a fair benchmark suite for imbalanced multimodal learning."""

__version__ = "0.1.0"
