"""rpgrealtime: the real-time backbone of an online text RPG (Django Channels)."""
