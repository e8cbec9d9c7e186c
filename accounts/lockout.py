"""The admin login lockout: django-axes' database handler, watching /admin/ requests only.

`AXES_ONLY_ADMIN_SITE` keeps axes from refusing anything outside the admin, but its handler would
still record every failed `authenticate()` — the JWT token route's too — and flag such a request
as locked out. Players mistyping a password on the token route must not lock a staff member out of
the admin, and that route has its own throttle and answers 401: so outside the admin this handler
records nothing.
"""

from __future__ import annotations

from typing import Any

from axes.handlers.database import AxesDatabaseHandler


class AdminLoginHandler(AxesDatabaseHandler):
    def user_login_failed(self, sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
        if request is not None and self.is_admin_request(request):
            super().user_login_failed(sender, credentials, request, **kwargs)

    def user_logged_in(self, sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
        if request is not None and self.is_admin_request(request):
            super().user_logged_in(sender, request, user, **kwargs)

    def user_logged_out(self, sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
        if request is not None and self.is_admin_request(request):
            super().user_logged_out(sender, request, user, **kwargs)
