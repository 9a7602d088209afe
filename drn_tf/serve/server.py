"""``drn serve``'s server: ``kserve.ModelServer`` with the models of :mod:`drn_tf.serve.model`.

What kserve provides: the V1 and V2 REST routes, ``/v2/health/live``, ``/v2/health/ready``,
``/v1/models/NAME`` (readiness per model), ``/metrics`` (Prometheus), request decoding and error
answers. What is added here, on kserve's FastAPI app before it starts:

* the listening address: kserve binds every interface; this server binds ``host`` (default 127.0.0.1),
  for HTTP and for the optional V2 gRPC server;
* a body-size limit, checked from ``Content-Length`` before the body is read (and counted while it
  is read, for chunked bodies): 413 with a JSON error; a body not received within the request timeout:
  408; a client gone before its answer: its work stops (:class:`RequestGuard`); request headers not
  received within the timeout: 408 (:func:`headers_bounded`);
* :class:`~drn_tf.serve.work.RequestError` answered with its status and ``{"error": ...}``;
* the page at ``/`` (:mod:`drn_tf.serve.ui`) and ``/ui/models``, the list it shows;
* the drain on SIGTERM/SIGINT: uvicorn stops accepting connections and gRPC refuses new calls, the
  requests in flight on both finish (up to ``grace`` seconds), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from contextlib import contextmanager

from drn_tf.serve.work import GONE, RequestError


@contextmanager
def _own_argv():
    """kserve parses ``sys.argv`` when it is imported (and would take ``drn serve``'s options by their
    prefixes): it sees the program name alone."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def import_kserve():
    with _own_argv():
        import kserve
        import kserve.model_server
    return kserve


class RequestGuard:
    """ASGI middleware around each HTTP request:

    * a body over ``limit`` bytes: 413, from its ``Content-Length`` before anything is read, else while
      it is read;
    * a body not received within ``body_seconds`` of the request's headers (a slow or stalled client):
      408, and the connection closed;
    * a client that goes away before its answer: :data:`~drn_tf.serve.work.GONE` of the request is set,
      and its work stops at the next tile (:class:`~drn_tf.serve.work.Deadline`)."""

    def __init__(self, app, limit: int, body_seconds: float):
        self.app, self.limit, self.body_seconds = app, limit, body_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _refuse(send, 413, f"request body of {length.decode('latin-1')} bytes is over this "
                                            f"server's limit of {self.limit} bytes")
        loop = asyncio.get_running_loop()
        end = loop.time() + self.body_seconds
        gone = threading.Event()
        seen, started, watcher = 0, False, None

        async def watch():
            message = await receive()  # after the body: http.disconnect, when the client leaves or is answered
            if message["type"] == "http.disconnect":
                gone.set()
            return message

        async def counted():
            nonlocal seen, watcher
            if watcher is not None:  # the body is in: the app listens for the disconnect too
                return await asyncio.shield(watcher)
            try:
                message = await asyncio.wait_for(receive(), max(end - loop.time(), 0.0))
            except asyncio.TimeoutError:
                raise _SlowBody() from None
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLong()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                watcher = asyncio.ensure_future(watch())
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        token = GONE.set(gone)
        try:
            await self.app(scope, counted, watched)
        except _TooLong:
            if not started:
                await _refuse(send, 413, f"request body of over {self.limit} bytes is over this server's limit "
                                         f"of {self.limit} bytes")
        except _SlowBody:
            if not started:
                await _refuse(send, 408, f"request body not received within {self.body_seconds:g} s")
        finally:
            GONE.reset(token)
            if watcher is not None and not watcher.done():
                watcher.cancel()


async def _refuse(send, status: int, error: str) -> None:
    """A JSON error, and the connection closed (the rest of the body is not read)."""
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _TooLong(Exception):
    pass


class _SlowBody(Exception):
    pass


def headers_bounded(seconds: float):
    """uvicorn's httptools protocol with a time limit on request headers: from a request's first byte
    they must be in within ``seconds``, else a 408 and the connection closed; a new connection that sends
    nothing for ``seconds`` is closed (uvicorn alone waits for either as long as a client likes). None
    when httptools is missing."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None
    body = json.dumps({"error": f"request headers not received within {seconds:g} s"}).encode()
    late = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    class HeadersBounded(HttpToolsProtocol):
        _headers_timer, _begun = None, False

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self):
            super().on_message_begin()
            self._begun = True
            self._arm()

        def on_headers_complete(self):
            self._begun = False
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def _arm(self):
            if self._headers_timer is None:
                self._headers_timer = self.loop.call_later(seconds, self._too_late)

        def _disarm(self):
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None

        def _too_late(self):
            self._headers_timer = None
            if not self.transport.is_closing():
                if self._begun:  # a request started: it gets an answer
                    self.transport.write(late)
                self.transport.close()

    return HeadersBounded


def add_routes(app, models: list, *, body_limit: int, ui: bool) -> None:
    """The additions to kserve's app (before kserve adds its own routes, so ``/`` is the page)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse

    async def request_error(_, exc: RequestError):
        return JSONResponse(status_code=exc.status, content={"error": str(exc)})

    async def malformed(_, exc: RequestValidationError):
        first = (exc.errors() or [{}])[0]
        return JSONResponse(status_code=400, content={"error": f"malformed request: {first.get('msg', exc)}"})

    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(RequestValidationError, malformed)  # V2 bodies FastAPI cannot parse
    app.add_middleware(RequestGuard, limit=body_limit, body_seconds=models[0].upscaler.limits.timeout)
    if not ui:
        return
    from drn_tf.serve.ui import PAGE

    listing = [m.describe() for m in models]

    async def page():
        return HTMLResponse(PAGE)

    async def model_list():
        return {"models": listing, "max_body_bytes": body_limit, "max_pixels": models[0].upscaler.limits.max_pixels}

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/ui/models", model_list, methods=["GET"], include_in_schema=False)


def grpc_server(host: str, port: int, server, body_limit: int):
    """kserve's V2 gRPC server, listening on ``host`` (kserve's own binds every interface); requests over
    ``body_limit`` bytes are refused by gRPC itself (RESOURCE_EXHAUSTED). Answers are not capped (kserve's
    cap of 8 MB would fail a batch of large PNGs): their size follows from the request's limits."""
    from concurrent import futures

    from grpc import aio
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.grpc.servicer import InferenceServicer

    class HostGRPCServer(GRPCServer):
        async def start(self, max_workers):
            self._server = aio.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                      interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
                                      options=[("grpc.max_receive_message_length", body_limit),
                                               ("grpc.max_send_message_length", -1)])  # bounded by the limits
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
                InferenceServicer(self._data_plane, self._model_repository_extension), self._server)
            self._server.add_insecure_port(f"{host}:{self._port}")
            await self._server.start()
            await self._server.wait_for_termination()

    return HostGRPCServer(port, server.dataplane, server.model_repository_extension, kwargs={},
                          grace_period=server.grace_period)


def serve(models: list, *, host: str, port: int, body_limit: int, grace: int, grpc_port: int | None = None,
          ui: bool = True) -> int:
    """Serve ``models`` (:class:`~drn_tf.serve.model.DrnModel`) until SIGTERM/SIGINT; returns 0 after the drain."""
    kserve = import_kserve()
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import app
    from kserve.protocol.rest.server import RESTServer

    class Server(kserve.ModelServer):
        signalled: list = []

        def start(self, models):
            """kserve's start, with both servers on ``host`` and both drained on the signal (no new
            connections or calls, those in flight finish, up to ``grace``)."""
            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = RESTServer(FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
                                           self.http_port, grace_period=self.grace_period,
                                           timeout_keep_alive=self.timeout_keep_alive)
            self._rest_server.config.host = host  # kserve builds it for 0.0.0.0
            self._rest_server.config.http = headers_bounded(models[0].upscaler.limits.timeout) or "auto"
            self._grpc_server = grpc_server(host, grpc_port, self, body_limit) if grpc_port else None
            self.setup_event_loop()
            self.register_signal_handler()
            asyncio.run(self._run())

        async def _run(self):
            rest = asyncio.ensure_future(self._rest_server.start())
            if self._grpc_server is None:
                return await rest
            grpc = asyncio.ensure_future(self._grpc_server.start(self.max_threads))
            uvicorn_server = self._rest_server._server  # its should_exit is set by the signal
            while not (rest.done() or uvicorn_server.should_exit):
                await asyncio.sleep(0.05)
            # both drain at once: gRPC refuses new calls from the signal on and lets those in flight finish
            await asyncio.gather(self._grpc_server.stop(), rest)
            await grpc

        def register_signal_handler(self):
            # uvicorn drains on SIGINT/SIGTERM and raises the signal again once it is done; it lands here
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda s, _frame: self.signalled.append(s))

    add_routes(app, models, body_limit=body_limit, ui=ui)
    server = Server(http_port=port, grpc_port=grpc_port or 0, enable_grpc=bool(grpc_port), grace_period=grace,
                    enable_latency_logging=False)
    server.start(models)
    return 0
