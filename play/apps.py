"""The browser client at /play/, its roster route, and the demo world (seed_demo, run_demo_bots)."""

from django.apps import AppConfig


class PlayConfig(AppConfig):
    name = "play"
    verbose_name = "Play (browser client and demo)"
