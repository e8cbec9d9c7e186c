"""The world: zones, area of interest, positions and movement, world events (docs/protocol.md §7)."""
