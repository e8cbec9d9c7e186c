"""rpgrealtime: the real-time backbone of an online text RPG (Django Channels)."""

# The release; pyproject.toml's `version` says the same (tests/test_release.py keeps them equal).
__version__ = "1.1.0.dev0"
