"""Hardware probe, GGUF memory estimate and tier fit.

Imports nothing of ours (see docs/ARCHITECTURE.md).
"""
