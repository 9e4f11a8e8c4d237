"""The node: llama.cpp runtime, model store, miner and oracle loops, validation, journal, events.

May import `profiler` and `chain`; never `cortensor_desktop`, textual or rich.
"""
