"""ASGI entry point: HTTP to Django, WebSockets through the JWT middleware to the consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rpgrealtime.settings.base")
django_asgi_app = get_asgi_application()  # set up Django before importing consumers

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.http_requests import http_requests  # noqa: E402
from realtime.middleware import JWTAuthMiddleware  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402
from realtime.server_hooks import LifespanApp, install_daphne_hooks  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": http_requests.track(django_asgi_app),  # counted, so a drain lets them finish
        "websocket": JWTAuthMiddleware(URLRouter(websocket_urlpatterns)),
        "lifespan": LifespanApp(),
    }
)

install_daphne_hooks()
