"""HTTP hygiene for every response: only known Host names, security headers, and HEAD wherever GET is served.

Pure ASGI middleware (no response buffering), installed by create_app (install()).
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No inline script anywhere but Swagger UI's start-up (/docs); Plotly sets inline styles.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_CSP = PAGE_CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    """Content-Security-Policy (frame-ancestors 'none' among it), nosniff, a referrer policy and no framing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (DOCS_CSP if scope["path"].endswith("/docs") else PAGE_CSP).encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in (*SECURITY_HEADERS, (b"content-security-policy", csp)) if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadAsGet:
    """HEAD answered as GET without the body (RFC 9110): the routes declare GET only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        body_sent = False

        async def send_headers_only(message: Message) -> None:
            nonlocal body_sent
            if message["type"] == "http.response.body":
                if body_sent:  # a streamed body's later parts
                    return
                body_sent = True
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


def install(app: FastAPI, allowed_hosts: Iterable[str]) -> None:
    """Add the stack to `app`, outermost first: HEAD as GET, the security headers (on every answer, the host
    check's 400 too), the host check."""
    hosts = [f"[{h}]" if ":" in h else h for h in allowed_hosts]  # an IPv6 literal arrives bracketed
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)  # each wraps those before
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HeadAsGet)
