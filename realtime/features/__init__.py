"""Features of the real-time system, each installed on the runtime by `realtime/boot.py`."""
