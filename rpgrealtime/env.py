"""Settings from the environment: django-environ, keeping a value that does not parse for the checks.

A number or switch that does not parse used to raise a bare `ValueError` while the settings
were imported (or, for some, at the first WebSocket accept). Kept instead as `Unparsed` text,
it reaches `realtime/checks/`, which names the variable and says how to fix it when
`manage.py check` runs — before the server starts, in the image and in compose.
"""

from __future__ import annotations

import environ

_TRUE = frozenset({"true", "on", "yes", "y", "1"})
_FALSE = frozenset({"false", "off", "no", "n", "0"})


class Unparsed(str):
    """The text of a setting that did not parse.

    Falsy, so a switch that does not parse counts as off, never as on (`if settings.X:`);
    arithmetic on it fails loudly where a number was expected.
    """

    __slots__ = ()

    def __bool__(self) -> bool:
        return False


class Env(environ.Env):
    """`environ.Env` plus readers that keep unparseable numbers and switches as `Unparsed`.

    An unset or empty variable takes the default, as in a compose file's `${X:-default}`.
    """

    def _raw(self, var: str) -> str | None:
        value = self.ENVIRON.get(var)
        return None if value is None or not value.strip() else value.strip()

    def float_or_raw(self, var: str, *, default: float) -> float | Unparsed:
        raw = self._raw(var)
        if raw is None:
            return default
        try:
            return float(raw)
        except ValueError:
            return Unparsed(raw)

    def int_or_raw(self, var: str, *, default: int) -> int | Unparsed:
        raw = self._raw(var)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            return Unparsed(raw)

    def bool_or_raw(self, var: str, *, default: bool) -> bool | Unparsed:
        raw = self._raw(var)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        return Unparsed(raw)
