"""The /play/ page, its static modules and the roster route, through Django's test client."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from play import services
from tests.support.users import access_token, make_user, refresh_token
from tests.support.world import create_default_zones

pytestmark = pytest.mark.django_db(transaction=True)

STATIC = Path(__file__).resolve().parents[2] / "play" / "static" / "play" / "js"
ROOT = Path(__file__).resolve().parents[2]
MODULES = ("api", "socket", "chat", "world", "combat", "game", "app", "ui")


def page_config(html: str) -> dict:
    found = re.search(r'<script id="play-config" type="application/json">(.*?)</script>', html, re.S)
    assert found, "the page embeds its configuration"
    return json.loads(found.group(1))


def test_root_redirects_to_the_page():
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"] == "/play/"


def test_page_carries_zones_monsters_and_rules(settings):
    create_default_zones()
    settings.WORLD_NEARBY_RADIUS = 120.0
    response = Client().get("/play/")
    assert response.status_code == 200
    html = response.content.decode()
    config = page_config(html)
    zones = {zone["name"]: zone for zone in config["zones"]}
    assert set(zones) == {"starter_town", "dark_forest"}
    assert (zones["starter_town"]["spawn_x"], zones["dark_forest"]["max_x"]) == (500, 2000)
    assert [m["key"] for m in config["monsters"]] == ["goblin", "wolf", "troll", "dragon"]
    assert (config["nearby_radius"], config["max_monsters"]) == (120.0, 6)
    assert '<script type="module" src="/static/play/js/app.js">' in html
    for endpoint in ("game", "chat", "world", "combat"):
        assert f'data-endpoint="{endpoint}"' in html
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-Frame-Options"] == "DENY"


def test_page_allows_only_its_own_scripts_styles_and_sockets():
    create_default_zones()
    response = Client().get("/play/", headers={"host": "localhost"})
    policy = dict(part.split(" ", 1) for part in response["Content-Security-Policy"].split("; "))
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"  # no inline code
    assert policy["connect-src"] == "'self' ws://localhost wss://localhost"
    assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    html = response.content.decode()
    # Nothing on the page that the policy would block: no inline script, handler or style.
    assert re.search(r"<script(?![^>]*\b(src|type=\"application/json\"))", html) is None
    assert re.search(r"\son[a-z]+=|\sstyle=|<style", html) is None


def test_page_names_the_demo_password_only_on_a_development_server(settings):
    settings.DEBUG = True
    assert services.DEMO_PASSWORD in Client().get("/play/").content.decode()
    settings.DEBUG = False
    assert services.DEMO_PASSWORD not in Client().get("/play/").content.decode()


def test_page_answers_get_and_head_only():
    assert Client().head("/play/").status_code == 200
    assert Client().post("/play/").status_code == 405


@pytest.mark.parametrize("module", MODULES)
def test_modules_are_served_as_javascript(module):
    response = Client().get(f"/static/play/js/{module}.js")
    assert response.status_code == 200
    assert "javascript" in response["Content-Type"]


def test_client_code_never_puts_a_token_in_a_url():
    """Tokens go in the Authorization header or the `bearer` subprotocol only."""
    for module in MODULES:
        source = (STATIC / f"{module}.js").read_text()
        assert "token=" not in source, module
        assert not re.search(r"[?&]access", source), module
    socket_source = (STATIC / "socket.js").read_text()
    assert "this.url = `${base}/ws/${name}`" in socket_source
    # The page connects through the client library, which offers the token as a subprotocol.
    library = (ROOT / "clients" / "js" / "src" / "client.js").read_text()
    assert 'new this._WebSocket(this.url, ["bearer", token])' in library
    assert "token=" not in library


def test_roster_needs_a_token():
    response = Client().get("/play/api/roster/")
    assert response.status_code == 401


def test_roster_with_a_refresh_token_is_refused():

    user = make_user()
    response = Client().get("/play/api/roster/", HTTP_AUTHORIZATION=f"Bearer {refresh_token(user)}")
    assert response.status_code == 401


def test_roster_of_a_player_in_a_guild(settings):
    settings.DEBUG = True
    services.demo_seed()

    dave = get_user_model().objects.get(username="dave")
    response = Client().get("/play/api/roster/", HTTP_AUTHORIZATION=f"Bearer {access_token(dave)}")
    assert response.status_code == 200
    body = response.json()
    assert body["guild"]["name"] == services.DEMO_GUILD
    assert {m["username"] for m in body["guild"]["members"]} == set(services.DEMO_USERNAMES)
    assert all(m["status"] == "offline" for m in body["guild"]["members"])
    assert body["party"] is None
    assert [p["name"] for p in body["parties"]] == [services.DEMO_PARTY]
    assert response["Cache-Control"] == "no-store"
