"""One consumer per endpoint, all built on `base.BaseConsumer`."""
