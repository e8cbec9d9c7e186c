"""Domain logic with no Channels imports; consumers, views, admin and commands call into it."""
