"""Hosts that assemble nodes (embedded network, one standalone node) and control them."""
