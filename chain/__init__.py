"""Contracts, web3 client, wallet and devnets.

Imports nothing of ours (see docs/ARCHITECTURE.md).
"""
