"""The WebSocket system: consumers, the outbound path, the per-process hub and shared state."""
