"""One served model as a ``kserve.Model``: V1 bodies (dicts) and V2 requests (``InferRequest``) in,
their answers out; the work runs in the server's worker pool, off the event loop."""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import Executor

import orjson
from kserve import InferRequest, Model

from drn_tf.serve.protocol import Batch, answer_v1, answer_v2, parse_v1, parse_v2
from drn_tf.serve.work import CLIENT_GONE, GONE, Deadline, RequestError, Upscaler


def json_body(payload):
    """A V1 body kserve left undecoded (sent without ``Content-Type: application/json``, as ``curl -d``
    does; TF Serving takes those too) -> the parsed JSON; 400 if it is not JSON."""
    if not isinstance(payload, (bytes, str)):
        return payload
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"request body is not JSON: {exc}") from None


GRPC_STATUS = {400: "INVALID_ARGUMENT", 413: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 504: "DEADLINE_EXCEEDED"}


def grpc_error(exc: RequestError):
    """A refusal as gRPC answers it: the status code for the HTTP status, the same message."""
    from grpc import StatusCode
    from grpc_interceptor.exceptions import GrpcException

    return GrpcException(details=str(exc), status_code=getattr(StatusCode, GRPC_STATUS.get(exc.status, "INVALID_ARGUMENT")))


class DrnModel(Model):
    """A DRN model under ``name``: :class:`~drn_tf.serve.work.Upscaler` behind kserve's predict."""

    def __init__(self, name: str, upscaler: Upscaler, pool: Executor, *, runtime: str, source: str,
                 photo: Upscaler | None = None):
        super().__init__(name)
        self.upscaler, self.pool = upscaler, pool
        self.photo = photo  # the preset's photo variant: encoded JPEG requests go there
        self.runtime_name, self.source = runtime, source
        self.ready = True  # loaded before the server starts

    def describe(self) -> dict:
        """What the page at / lists."""
        return {"name": self.name, "scale": self.upscaler.scale, "runtime": self.runtime_name, "source": self.source}

    async def predict(self, payload, headers=None, response_headers=None):
        try:
            return await self._predict(payload)
        except RequestError as exc:
            if getattr(payload, "from_grpc", False):
                raise grpc_error(exc) from None
            raise

    async def _predict(self, payload):
        deadline = Deadline(self.upscaler.limits.timeout, GONE.get())  # GONE: set by the HTTP middleware
        limit = self.upscaler.limits.max_batch
        batch = parse_v2(payload, limit) if isinstance(payload, InferRequest) else parse_v1(json_body(payload), limit)
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.pool, self._run, batch, deadline)
        except asyncio.CancelledError:  # a gRPC call its client cancelled: the work stops at the next tile
            deadline.gone.set()
            raise
        if isinstance(payload, InferRequest):
            return answer_v2(batch, results, self.name, payload)
        return answer_v1(batch, results)

    def _run(self, batch: Batch, deadline: Deadline) -> list:
        try:
            if batch.kind != "bytes":
                return [self.upscaler.upscale_pixels(item, deadline) for item in batch.items]
            return [self.upscaler_for(item).upscale_file_bytes(item, deadline) for item in batch.items]
        except RequestError as exc:
            if exc.status == CLIENT_GONE:
                print(f"drn serve: {self.name}: {exc}", file=sys.stderr, flush=True)
            raise

    def upscaler_for(self, data: bytes) -> Upscaler:
        """The photo variant for an encoded JPEG (read from its header), when one is loaded; else the model."""
        import io

        from drn_tf.core.degrade import estimate_jpeg_quality

        if self.photo is not None and data[:2] == b"\xff\xd8" and estimate_jpeg_quality(io.BytesIO(data)) is not None:
            return self.photo
        return self.upscaler
