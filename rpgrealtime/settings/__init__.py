"""Settings modules: `base` (everything, from the environment) and `test` (the test suite)."""
