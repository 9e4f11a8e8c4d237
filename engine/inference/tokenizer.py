"""Token counts in this process, with the model's own vocabulary (no weights, no context).

The router answers `usage` and refuses prompts larger than the context before anything is paid;
both need the model's tokenizer and chat template, not an estimate. A vocab-only llama.cpp load
reads the GGUF's tokenizer in a few milliseconds and holds no weights, so unlike generation it
does not need a worker process; it renders prompts with the very function the worker prefills.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from engine.errors import ModelError
from engine.inference.runtime import Prompt
from engine.inference.worker_process import prompt_token_ids


class Tokenizer:
    """Counts tokens as a chat worker of the same model would (thread-safe)."""

    def __init__(self, model_path: Path) -> None:
        import llama_cpp

        try:
            self._llm: Any = llama_cpp.Llama(
                model_path=str(model_path), vocab_only=True, verbose=False
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"{model_path}: cannot read its tokenizer: {exc}") from None
        self._has_template = "tokenizer.chat_template" in self._llm.metadata
        self._lock = threading.Lock()

    def prompt_tokens(self, prompt: Prompt) -> int:
        """Tokens the prompt is prefilled as (through the chat template, as miners do)."""
        with self._lock:
            ids = prompt_token_ids(self._llm, prompt, raw=False, has_template=self._has_template)
            return len(ids)

    def text_tokens(self, text: str) -> int:
        """Tokens of generated text (no BOS, no special tokens)."""
        with self._lock:
            return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def pieces(self, text: str) -> list[str]:
        """The text cut where its tokens begin: the chunks of a streamed answer."""
        with self._lock:
            ids = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            raw = [self._llm.detokenize([i]) for i in ids]
        pieces: list[str] = []
        pending = b""
        for chunk in raw:
            pending += chunk
            try:
                pieces.append(pending.decode("utf-8"))
            except UnicodeDecodeError:
                continue  # a character split over tokens: send it whole with the next one
            pending = b""
        if pending:
            pieces.append(pending.decode("utf-8", "replace"))
        return pieces
