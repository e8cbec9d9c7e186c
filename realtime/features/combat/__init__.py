"""Combat: a pure rules engine, the database referee, timers, and the frames players see (docs/protocol.md §6)."""
