"""all-MiniLM-L6-v2 converted to GGUF and run by llama.cpp matches sentence-transformers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engine.errors import InferenceRequestError
from engine.inference.runtime import InferenceWorker
from engine.poi.validation import cosine_similarity

pytestmark = pytest.mark.llama

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


def test_vectors_match_the_sentence_transformers_reference(embed_worker: InferenceWorker) -> None:
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    vectors = embed_worker.embed(reference["sentences"])
    assert len(vectors) == len(reference["sentences"])
    for sentence, ours, theirs in zip(
        reference["sentences"], vectors, reference["embeddings"], strict=True
    ):
        assert len(ours) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in ours)), 1.0, rel_tol=1e-6)
        assert cosine_similarity(ours, theirs) >= 0.999, sentence


def test_similar_sentences_are_closer_than_unrelated_ones(embed_worker: InferenceWorker) -> None:
    paris, capital, guitar = embed_worker.embed(
        ["The capital of France is Paris.", "Paris is France's capital.", "He plays guitar."]
    )
    assert cosine_similarity(paris, capital) > cosine_similarity(paris, guitar) + 0.3


def test_generation_on_an_embedding_model_is_a_typed_error(embed_worker: InferenceWorker) -> None:
    with pytest.raises(InferenceRequestError, match="embedding model"):
        embed_worker.generate("hello")


def test_cosine_helper() -> None:
    assert cosine_similarity([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)
    assert cosine_similarity([1.0, 0.0], [0.0, 3.0]) == pytest.approx(0.0)
    assert cosine_similarity([1.0, 1.0], [-1.0, -1.0]) == pytest.approx(-1.0)
    assert cosine_similarity([0.0, 0.0], [1.0, 0.0]) == 0.0
    with pytest.raises(ValueError):
        cosine_similarity([1.0], [1.0, 2.0])
