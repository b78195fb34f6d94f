from latentlink.shared.proto import latentlink_pb2 as _latentlink_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Container(_message.Message):
    __slots__ = ("decoder_digest", "model_name", "image_shape", "image_count", "encoding", "batches")
    DECODER_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    decoder_digest: str
    model_name: str
    image_shape: _containers.RepeatedScalarFieldContainer[int]
    image_count: int
    encoding: _latentlink_pb2.LatentEncoding
    batches: _containers.RepeatedCompositeFieldContainer[_latentlink_pb2.LatentBatch]
    def __init__(self, decoder_digest: _Optional[str] = ..., model_name: _Optional[str] = ..., image_shape: _Optional[_Iterable[int]] = ..., image_count: _Optional[int] = ..., encoding: _Optional[_Union[_latentlink_pb2.LatentEncoding, str]] = ..., batches: _Optional[_Iterable[_Union[_latentlink_pb2.LatentBatch, _Mapping]]] = ...) -> None: ...
