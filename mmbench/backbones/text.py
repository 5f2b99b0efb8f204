"""BERT text encoder for Twitter-15 and Sarcasm.

``bert-base-uncased`` (a Hugging Face hub name or a local folder holding ``config.json`` and the
weights) through ``transformers``; ``pooler_output`` -> ``Linear(hidden, 256)``, as TPAMI-AMSS
``AMSS_IT/ITModel.py``. The official code passes only the token ids, so BERT attends to the
zero padding; ``attention_mask=True`` derives the mask as ``ids != 0``.

``model="tiny"`` is a random 2-layer BERT (hidden 32) over the built-in tiny vocabulary
(``tiny_vocab``, also the tiny tokenizer of ``mmbench.datasets.image_text``) for CPU smoke runs
and tests; nothing is downloaded.
"""

from __future__ import annotations

import functools
import string
from pathlib import Path

import torch
from torch import nn

FEATURE_DIM = 256
TINY = "tiny"
_TINY_WORDS = ["the", "a", "an", "and", "or", "of", "to", "in", "on", "at", "for", "with", "is", "are", "was", "be", "it", "this", "that", "i", "you", "he", "she", "we", "they", "my", "your", "not", "no", "yes", "so", "but", "just", "like", "love", "good", "great", "bad", "sad", "happy", "day", "time", "people", "new", "today", "get", "got", "user", "num", "url", "emoji", "sarcasm", "t"]


@functools.cache
def tiny_vocab() -> tuple[str, ...]:
    """A WordPiece vocabulary able to spell any lowercase ASCII text: specials (``[PAD]`` = 0),
    characters, ``##`` continuations and a few common words."""
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    return tuple(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars] + _TINY_WORDS)



def tiny_bert_config(vocab_size: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )


def looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


class BertTextEncoder(nn.Module):
    """(B, L) int64 token ids -> (B, ``out_dim``) = ``Linear(hidden, out_dim)(pooler_output)``.

    ``model``: hub name, local folder, ``"tiny"``, or a ``transformers.BertConfig`` (random init).
    """

    def __init__(self, model="bert-base-uncased", out_dim: int = FEATURE_DIM, attention_mask: bool = False):
        super().__init__()
        from transformers import BertConfig, BertModel

        if isinstance(model, BertConfig):
            self.bert = BertModel(model)
        elif model == TINY:
            self.bert = BertModel(tiny_bert_config(len(tiny_vocab())))
        else:
            path = Path(model).expanduser()
            self.bert = BertModel.from_pretrained(str(path) if looks_like_path(model) else model)
        self.attention_mask = attention_mask
        self.proj = nn.Linear(self.bert.config.hidden_size, out_dim)
        self.out_dim = out_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).long() if self.attention_mask else None
        out = self.bert(input_ids=ids, attention_mask=mask)
        return self.proj(out.pooler_output)
