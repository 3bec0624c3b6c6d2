"""The project's own WordPiece tokenizer, built offline from the knowledge base's vocabulary.

Models that start from a pretrained text tower use that tower's tokenizer instead; this one lets every preset be
built without a download. It is saved with each model, so later changes to the knowledge base never change the
token ids of a published model.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator
from typing import Any

import yaml
from tokenizers import normalizers, pre_tokenizers
from transformers import BertTokenizer

from .knowledge import KNOWLEDGE_BASE_PATH

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_ALPHABET = string.ascii_lowercase + string.digits


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node.replace("{}", " ")
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def knowledge_base_corpus(path=KNOWLEDGE_BASE_PATH) -> list[str]:
    """Every string in the knowledge base file (phrases, templates, task and class names), in file order."""
    with open(path, encoding="utf-8") as handle:
        return list(_strings(yaml.safe_load(handle)))


def build_wordpiece_vocab(corpus: Iterable[str]) -> list[str]:
    """Special tokens, every character as a word start and as a continuation piece, then each corpus word (lowercased,
    split like BERT) in order of first appearance. Unknown words fall back to characters, never to [UNK]."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    characters = _ALPHABET + string.punctuation
    vocab = dict.fromkeys([*SPECIAL_TOKENS, *characters, *("##" + c for c in characters)])
    for text in corpus:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            vocab.setdefault(word)
    return list(vocab)


def make_tokenizer(vocab: list[str], model_max_length: int = 128) -> BertTokenizer:
    """An uncased BERT WordPiece tokenizer over `vocab`."""
    return BertTokenizer(
        vocab={token: index for index, token in enumerate(vocab)},
        do_lower_case=True,
        model_max_length=model_max_length,
    )


def build_knowledge_base_tokenizer(model_max_length: int = 128) -> BertTokenizer:
    """The default tokenizer of the offline presets: the knowledge base's words plus character fallback."""
    return make_tokenizer(build_wordpiece_vocab(knowledge_base_corpus()), model_max_length)
