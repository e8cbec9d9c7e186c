"""HTTP views of the real-time system (docs/protocol.md §8): health, metrics, publish."""

from realtime.views.health import health_check
from realtime.views.metrics import MetricsView
from realtime.views.publish import PublishView

__all__ = ["MetricsView", "PublishView", "health_check"]
