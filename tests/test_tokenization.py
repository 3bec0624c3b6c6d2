from __future__ import annotations

from visionclip.knowledge import load_knowledge_base
from visionclip.tokenization import build_knowledge_base_tokenizer


def test_tokenizer_is_deterministic_and_covers_the_knowledge_base():
    first, second = build_knowledge_base_tokenizer(), build_knowledge_base_tokenizer()
    assert first.get_vocab() == second.get_vocab()
    knowledge = load_knowledge_base()
    for concept in knowledge.concepts.values():
        for phrase in concept.phrases + concept.absent:
            tokens = first.tokenize(phrase)
            assert "[UNK]" not in tokens
            assert not any(t.startswith("##") for t in tokens), f"{phrase!r} split into pieces: {tokens}"


def test_unknown_words_fall_back_to_characters_not_unk():
    tokenizer = build_knowledge_base_tokenizer(model_max_length=32)
    tokens = tokenizer.tokenize("Quixotic cataract, 20% haze!")
    assert "[UNK]" not in tokens and tokens[0] == "q"
    assert tokenizer("x " * 100, truncation=True)["input_ids"].__len__() == 32
