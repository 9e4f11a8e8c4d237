"""The protocol's roles: miner, oracle, the user's side, and what they share."""
