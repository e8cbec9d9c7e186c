"""Test helpers: users and tokens, in-process WebSocket clients, real Redis and daphne processes."""
