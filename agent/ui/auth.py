"""The UI's login and its protection against cross-site requests.

- Login: against a server with a token, the login form takes the token once; the UI
  answers with an HttpOnly, SameSite=Strict cookie holding a value derived from the
  token (HMAC), never the token itself. Without that cookie only the login page and the
  static files are served: pages redirect to ``/login``, the rest answers 401.
- CSRF: double-submit. Every page sets a random ``agent_csrf`` cookie (SameSite=Strict)
  and puts its value in its forms (field ``csrf``) and in htmx's headers
  (``X-CSRF-Token``); a POST whose value does not match the cookie is refused with 403.
  It applies without a token too: a page on another site must not drive ``agent ui``
  on this machine's loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

SESSION_COOKIE = "agent_session"
CSRF_COOKIE = "agent_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LOGIN_PATH = "/login"
STATIC_PREFIX = "/ui/static/"
#: Methods that change nothing, so need no CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_value(token: str) -> str:
    """The cookie value that proves the token was given (the token never leaves the server)."""
    return hmac.new(token.encode(), b"agent-ui-session", hashlib.sha256).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser: its cookie, or the one this response will set."""
    return request.cookies.get(CSRF_COOKIE) or request.state.new_csrf


class Sessions:
    """What a logged-in browser holds, and how it gets it.

    Args:
        token: the server's token; None = no login (``agent ui`` on loopback).
        secure_cookies: mark cookies ``Secure`` (when served over https).
    """

    def __init__(self, token: str | None, secure_cookies: bool = False):
        self.session = session_value(token) if token else None
        self.secure = secure_cookies

    @property
    def required(self) -> bool:
        return self.session is not None

    def logged_in(self, request: Request) -> bool:
        given = request.cookies.get(SESSION_COOKIE, "")
        return self.session is not None and hmac.compare_digest(given, self.session)

    def token_matches(self, given: str) -> bool:
        return self.session is not None and hmac.compare_digest(session_value(given), self.session)

    def login_cookie(self, response: Response) -> None:
        """Set the session cookie on ``response`` (after a right token)."""
        response.set_cookie(
            SESSION_COOKIE,
            self.session or "",
            httponly=True,
            samesite="strict",
            secure=self.secure,
            path="/",
        )


class UIAuth:
    """ASGI middleware of the UI app: the session check (with a token) and the CSRF check."""

    def __init__(self, app: ASGIApp, sessions: Sessions):
        self.app = app
        self.sessions = sessions
        self.secure = sessions.secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        path = scope["path"]
        if path.startswith(STATIC_PREFIX):
            await self.app(scope, receive, send)
            return
        cookie_csrf = request.cookies.get(CSRF_COOKIE)
        if request.method not in SAFE_METHODS:
            receive = await self._checked_csrf(request, cookie_csrf, scope, receive, send)
            if receive is None:
                return
        needs_login = self.sessions.required and path != LOGIN_PATH
        if needs_login and not self.sessions.logged_in(request):
            await self._refuse(request)(scope, receive, send)
            return
        new_csrf = None if cookie_csrf else new_csrf_token()
        scope.setdefault("state", {})["new_csrf"] = new_csrf
        await self.app(scope, receive, self._setting_csrf(send, new_csrf))

    def _refuse(self, request: Request) -> Response:
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if wants_page:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{LOGIN_PATH}?next={quote(target)}", status_code=303)
        return PlainTextResponse("log in first: open /login and give the server's token", 401)

    async def _checked_csrf(self, request, cookie_csrf, scope, receive, send):
        """The receive channel to go on with (the body replayed), or None once refused."""
        body = await request.body()
        given = request.headers.get(CSRF_HEADER)
        if given is None and b"csrf" in body:
            form = parse_qs(body.decode("latin-1"))
            given = (form.get(CSRF_FIELD) or [None])[0]
        if not cookie_csrf or not given or not hmac.compare_digest(given, cookie_csrf):
            response = PlainTextResponse(
                "refused: this form has no valid CSRF token (reload the page and try again)",
                403,
            )
            await response(scope, receive, send)
            return None
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    def _setting_csrf(self, send: Send, new_csrf: str | None) -> Send:
        if new_csrf is None:
            return send

        async def send_with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{CSRF_COOKIE}={new_csrf}; Path=/; SameSite=Strict"
                if self.secure:
                    cookie += "; Secure"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        return send_with_cookie
