"""The model store: catalogue downloads, GGUF integrity checks, MiniLM conversion."""
