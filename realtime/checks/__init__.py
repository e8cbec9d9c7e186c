"""System checks for every setting the project reads, so `manage.py check` fails before a bad start.

The settings module keeps a value that does not parse as text (rpgrealtime/env.py) instead of
raising, so that every problem is reported here, each naming its environment variable and how to
fix it. `manage.py check --deploy` adds the combinations that are only dangerous in production.
The image and the compose file run `check --deploy` before the server starts.

IDs: `realtime.E0xx` a value that cannot work, `realtime.W0xx` one that works badly,
`realtime.E1xx`/`W1xx` production hazards (`--deploy` only).
"""

from realtime.checks import production, relations, services  # noqa: F401  (each registers its checks)
from realtime.checks.values import NUMBERS, TAG, NumberSetting

__all__ = ["NUMBERS", "TAG", "NumberSetting"]
