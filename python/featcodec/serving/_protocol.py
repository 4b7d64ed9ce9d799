"""What crosses the wire between Client and server, beside the bank's message.

The service is declared in inference.proto; its message classes are the
generated inference_pb2.  The service itself is wired with grpc's generic
handlers (server) and multi-callables (client) on the method paths below, so
no generated grpc code, and no grpcio version baked into it, is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import inference_pb2 as pb

SERVICE = "featcodec.serving.v1.SplitInference"
INFER = f"/{SERVICE}/Infer"
DESCRIBE = f"/{SERVICE}/Describe"

CLASSIFICATION = "classification"
SEGMENTATION = "segmentation"

ErrorCode = pb.Error.Code

_LABEL_TYPES: "dict[int, np.dtype]" = {1: np.dtype("u1"), 2: np.dtype("<u2")}


class ServingError(Exception):
    """A reply that carries an error instead of an answer (the stream goes on)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{pb.Error.Code.Name(code) if code in pb.Error.Code.values() else code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def code_name(self) -> str:
        return pb.Error.Code.Name(self.code) if self.code in pb.Error.Code.values() else str(self.code)


@dataclass(frozen=True)
class Answer:
    """The server's reply to one message.

    Classification: ``classes`` and ``probabilities`` are (B, k), best first.
    Segmentation: ``labels`` is (B, H, W).  An error reply has ``error`` set
    and nothing else.
    """

    id: int
    unit: Optional[int] = None
    classes: Optional[np.ndarray] = None
    probabilities: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    error: Optional[ServingError] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> "Answer":
        if self.error is not None:
            raise self.error
        return self


def error_reply(request_id: int, code: int, detail: str) -> pb.InferReply:
    return pb.InferReply(id=request_id, error=pb.Error(code=pb.Error.Code.Name(code), detail=detail[:1000]))


def classification_reply(request_id: int, unit: int, classes: np.ndarray, probabilities: np.ndarray) -> pb.InferReply:
    """classes, probabilities: (B, k)."""
    return pb.InferReply(id=request_id, unit=unit, classification=pb.Classification(
        k=classes.shape[1], index=classes.reshape(-1).tolist(), probability=probabilities.reshape(-1).tolist()))


def segmentation_reply(request_id: int, unit: int, labels: np.ndarray) -> pb.InferReply:
    """labels: (B, H, W) of uint8 or uint16."""
    return pb.InferReply(id=request_id, unit=unit, segmentation=pb.Segmentation(
        batch=labels.shape[0], height=labels.shape[1], width=labels.shape[2], label_bytes=labels.dtype.itemsize,
        labels=np.ascontiguousarray(labels, dtype=labels.dtype.newbyteorder("<")).tobytes()))


def answer_of(reply: pb.InferReply) -> Answer:
    """The Answer a reply carries; a reply that is inconsistent is a ServingError in the answer."""
    kind = reply.WhichOneof("result")
    if kind == "error":
        return Answer(reply.id, error=ServingError(reply.error.code, reply.error.detail))
    if kind == "classification":
        c = reply.classification
        if c.k == 0 or len(c.index) != len(c.probability) or len(c.index) % c.k:
            return Answer(reply.id, error=ServingError(ErrorCode.UNKNOWN, "inconsistent classification reply"))
        classes = np.asarray(c.index, dtype=np.int64).reshape(-1, c.k)
        probabilities = np.asarray(c.probability, dtype=np.float32).reshape(-1, c.k)
        return Answer(reply.id, unit=reply.unit, classes=classes, probabilities=probabilities)
    if kind == "segmentation":
        s = reply.segmentation
        dtype = _LABEL_TYPES.get(s.label_bytes)
        if dtype is None or len(s.labels) != s.batch * s.height * s.width * dtype.itemsize:
            return Answer(reply.id, error=ServingError(ErrorCode.UNKNOWN, "inconsistent segmentation reply"))
        labels = np.frombuffer(s.labels, dtype=dtype).reshape(s.batch, s.height, s.width)
        return Answer(reply.id, unit=reply.unit, labels=labels)
    return Answer(reply.id, error=ServingError(ErrorCode.UNKNOWN, "reply with neither an answer nor an error"))
