"""The llama.cpp runtime: the worker process, its typed requests and results."""
