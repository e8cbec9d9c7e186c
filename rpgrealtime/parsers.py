"""Request body parsing for the HTTP API."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class JSONBodyParser(JSONParser):
    """DRF's JSON parser, but JSON nested deeply enough to exhaust the recursion limit is a 400.

    DRF catches only ValueError, so such a body (one small request, no login needed on the
    token route) would otherwise end as a 500 with a traceback in the log.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
