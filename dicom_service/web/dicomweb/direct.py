"""Direct routes: FastAPI routes without per-request dependency solving.

A viewer requests one rendered frame for every image it scrolls through, and
FastAPI's dependency solving and parameter handling cost about 0.13 ms of
each, over a tenth of the frame's CPU. A :class:`DirectRoute` is an ordinary
:class:`~fastapi.routing.APIRoute` (in the route table, in the OpenAPI
document with its path parameters, 405 for other methods) whose endpoint is
called with the request and the path parameters as the URL gives them
(strings), nothing else. Such an endpoint validates its parameters itself and
asks the policy itself, first thing
(:func:`dicom_service.web.policy.current_reader`).

The application (:class:`ServiceApp`) puts a :class:`FastLane` in front of its
middleware stack, which sends a GET for a direct route straight to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

# async def endpoint(request, **path_parameters) -> Response
DirectEndpoint = Callable[..., Awaitable[Response]]


class DirectRoute(APIRoute):
    """An API route that calls its endpoint as ``endpoint(request, **path_params)``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: DirectEndpoint = self.endpoint

        async def handler(request: Request) -> Response:
            return await endpoint(request, **request.path_params)

        return handler


class FastLane:
    """The application's outermost layer: a GET for a :class:`DirectRoute` goes
    straight to its endpoint, everything else through the whole stack.

    A viewer's frame request would otherwise pass through every middleware
    and the router, each wrapping the request and its response messages: about
    0.1 ms of a frame's millisecond in a serving process. None of those layers
    does anything for these routes: they take no body, their images are never
    gzipped, they are not pages, and they solve no dependencies. What the stack
    would do for them is done here the same way: the route and its path
    parameters are put in the scope, and an exception becomes the response of
    the application's own handler for it (problem responses, see
    :mod:`dicom_service.web.problems`); one without a handler propagates, as
    the server's error middleware would let it (the server answers 500).
    Other methods (HEAD, and 405 for the rest) go through the stack."""

    def __init__(self, app: Starlette, stack: ASGIApp) -> None:
        self.app = app
        self.stack = stack
        self.routes = [r for r in app.router.routes if isinstance(r, DirectRoute)]
        # the paths' last segments, to pass everything else by at once
        self.tails = tuple({"/" + r.path.rsplit("/", 1)[1] for r in self.routes})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "GET"
                or not scope["path"].endswith(self.tails)):
            await self.stack(scope, receive, send)
            return
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope.setdefault("router", self.app.router)
                scope["route"] = route
                scope.update(child_scope)
                await self._answer(route, scope, receive, send)
                return
        await self.stack(scope, receive, send)

    async def _answer(self, route: DirectRoute, scope: Scope, receive: Receive,
                      send: Send) -> None:
        request = Request(scope, receive, send)
        endpoint: DirectEndpoint = route.endpoint
        try:
            response = await endpoint(request, **scope["path_params"])
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Callable[[Request, Exception],
                                                   Awaitable[Response]] | None:
        handlers = self.app.exception_handlers
        if isinstance(exc, StarletteHTTPException) and exc.status_code in handlers:
            return handlers[exc.status_code]  # type: ignore[no-any-return]
        for kind in type(exc).__mro__:
            if kind in handlers and kind is not Exception:
                return handlers[kind]  # type: ignore[no-any-return]
        return None


class ServiceApp(FastAPI):
    """FastAPI with :class:`FastLane` in front of its middleware stack."""

    def build_middleware_stack(self) -> ASGIApp:
        return FastLane(self, super().build_middleware_stack())
