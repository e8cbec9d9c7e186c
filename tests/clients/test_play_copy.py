"""The play page serves `clients/js/src` from a copy in its static files: the copy must be exact."""

from __future__ import annotations

from tests.support.cluster import ROOT

SOURCE = ROOT / "clients" / "js" / "src"
COPY = ROOT / "play" / "static" / "rpgrealtime-client"
HEADER = "// A copy of clients/js/src (scripts/sync-play.mjs): edit the original, then sync.\n"


def test_the_play_page_serves_the_current_client_library():
    expected = {path.name: HEADER + path.read_text() for path in SOURCE.glob("*.js")}
    copied = {path.name: path.read_text() for path in COPY.iterdir()}
    assert expected, "no library sources found"
    assert copied == expected, "play/static/rpgrealtime-client differs: run node clients/js/scripts/sync-play.mjs"
