from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InferRequest(_message.Message):
    __slots__ = ("id", "message")
    ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    id: int
    message: bytes
    def __init__(self, id: _Optional[int] = ..., message: _Optional[bytes] = ...) -> None: ...

class InferReply(_message.Message):
    __slots__ = ("id", "classification", "segmentation", "error", "unit")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    SEGMENTATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    id: int
    classification: Classification
    segmentation: Segmentation
    error: Error
    unit: int
    def __init__(self, id: _Optional[int] = ..., classification: _Optional[_Union[Classification, _Mapping]] = ..., segmentation: _Optional[_Union[Segmentation, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., unit: _Optional[int] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("k", "index", "probability")
    K_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    k: int
    index: _containers.RepeatedScalarFieldContainer[int]
    probability: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, k: _Optional[int] = ..., index: _Optional[_Iterable[int]] = ..., probability: _Optional[_Iterable[float]] = ...) -> None: ...

class Segmentation(_message.Message):
    __slots__ = ("batch", "height", "width", "label_bytes", "labels")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    LABEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    batch: int
    height: int
    width: int
    label_bytes: int
    labels: bytes
    def __init__(self, batch: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., label_bytes: _Optional[int] = ..., labels: _Optional[bytes] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "detail")
    class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[Error.Code]
        MALFORMED: _ClassVar[Error.Code]
        TOO_LARGE: _ClassVar[Error.Code]
        INTERNAL: _ClassVar[Error.Code]
    UNKNOWN: Error.Code
    MALFORMED: Error.Code
    TOO_LARGE: Error.Code
    INTERNAL: Error.Code
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    code: Error.Code
    detail: str
    def __init__(self, code: _Optional[_Union[Error.Code, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("network", "split", "feature_shape", "image_size", "task", "units", "bank_fingerprint", "top_k", "max_message_bytes", "max_in_flight", "max_batch")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    BANK_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    network: str
    split: str
    feature_shape: _containers.RepeatedScalarFieldContainer[int]
    image_size: _containers.RepeatedScalarFieldContainer[int]
    task: str
    units: int
    bank_fingerprint: str
    top_k: int
    max_message_bytes: int
    max_in_flight: int
    max_batch: int
    def __init__(self, network: _Optional[str] = ..., split: _Optional[str] = ..., feature_shape: _Optional[_Iterable[int]] = ..., image_size: _Optional[_Iterable[int]] = ..., task: _Optional[str] = ..., units: _Optional[int] = ..., bank_fingerprint: _Optional[str] = ..., top_k: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_in_flight: _Optional[int] = ..., max_batch: _Optional[int] = ...) -> None: ...
