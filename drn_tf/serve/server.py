"""``drn serve``'s server: ``kserve.ModelServer`` with the models of :mod:`drn_tf.serve.model`.

What kserve provides: the V1 and V2 REST routes, ``/v2/health/live``, ``/v2/health/ready``,
``/v1/models/NAME`` (readiness per model), ``/metrics`` (Prometheus), request decoding and error
answers. What is added here, on kserve's FastAPI app before it starts:

* the listening address: kserve binds every interface; this server binds ``host`` (default 127.0.0.1),
  for HTTP and for the optional V2 gRPC server;
* a body-size limit, checked from ``Content-Length`` before the body is read (and counted while it
  is read, for chunked bodies): 413 with a JSON error;
* :class:`~drn_tf.serve.work.RequestError` answered with its status and ``{"error": ...}``;
* the page at ``/`` (:mod:`drn_tf.serve.ui`) and ``/ui/models``, the list it shows;
* the drain on SIGTERM/SIGINT: uvicorn stops accepting connections and gRPC refuses new calls, the
  requests in flight on both finish (up to ``grace`` seconds), and the process exits 0.
"""

from __future__ import annotations

import json
import signal
import sys
from contextlib import contextmanager

from drn_tf.serve.work import RequestError


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


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes, from its ``Content-Length``
    before anything is read, else while it is read."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(send, length.decode("latin-1"))
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLong()
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLong:
            if not started:
                await self._refuse(send, f"over {self.limit}")

    async def _refuse(self, send, length: str):
        body = json.dumps({"error": f"request body of {length} bytes is over this server's limit of "
                                    f"{self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLong(Exception):
    pass


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
    app.add_middleware(BodyLimit, limit=body_limit)
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
    import asyncio

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
