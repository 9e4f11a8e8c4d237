"""The screens' backends: plain code, no Textual, tested without a terminal."""
