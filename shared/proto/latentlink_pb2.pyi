from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LatentEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LATENT_ENCODING_UNSPECIFIED: _ClassVar[LatentEncoding]
    LATENT_ENCODING_FLOAT64: _ClassVar[LatentEncoding]
    LATENT_ENCODING_FLOAT32: _ClassVar[LatentEncoding]
    LATENT_ENCODING_FLOAT16: _ClassVar[LatentEncoding]
    LATENT_ENCODING_ANS: _ClassVar[LatentEncoding]
    LATENT_ENCODING_HYPERPRIOR: _ClassVar[LatentEncoding]

class OutputFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_FORMAT_PNG: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_NPZ: _ClassVar[OutputFormat]
LATENT_ENCODING_UNSPECIFIED: LatentEncoding
LATENT_ENCODING_FLOAT64: LatentEncoding
LATENT_ENCODING_FLOAT32: LatentEncoding
LATENT_ENCODING_FLOAT16: LatentEncoding
LATENT_ENCODING_ANS: LatentEncoding
LATENT_ENCODING_HYPERPRIOR: LatentEncoding
OUTPUT_FORMAT_PNG: OutputFormat
OUTPUT_FORMAT_NPZ: OutputFormat

class ImageShape(_message.Message):
    __slots__ = ("height", "width", "channels")
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    height: int
    width: int
    channels: int
    def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ...) -> None: ...

class DecoderSummary(_message.Message):
    __slots__ = ("image_shape", "latent_dim", "size_bytes", "model_name", "has_entropy_model")
    IMAGE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    HAS_ENTROPY_MODEL_FIELD_NUMBER: _ClassVar[int]
    image_shape: _containers.RepeatedScalarFieldContainer[int]
    latent_dim: int
    size_bytes: int
    model_name: str
    has_entropy_model: bool
    def __init__(self, image_shape: _Optional[_Iterable[int]] = ..., latent_dim: _Optional[int] = ..., size_bytes: _Optional[int] = ..., model_name: _Optional[str] = ..., has_entropy_model: _Optional[bool] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("protocol_version", "decoder_digest", "decoder", "encodings", "session", "sender_id")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECODER_DIGEST_FIELD_NUMBER: _ClassVar[int]
    DECODER_FIELD_NUMBER: _ClassVar[int]
    ENCODINGS_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    decoder_digest: str
    decoder: DecoderSummary
    encodings: _containers.RepeatedScalarFieldContainer[LatentEncoding]
    session: str
    sender_id: str
    def __init__(self, protocol_version: _Optional[int] = ..., decoder_digest: _Optional[str] = ..., decoder: _Optional[_Union[DecoderSummary, _Mapping]] = ..., encodings: _Optional[_Iterable[_Union[LatentEncoding, str]]] = ..., session: _Optional[str] = ..., sender_id: _Optional[str] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_message_bytes", "max_batch_images", "max_model_bytes", "max_chunk_bytes", "max_decoder_activations", "max_decoder_macs", "max_batch_pixels")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_DECODER_ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_DECODER_MACS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_PIXELS_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_batch_images: int
    max_model_bytes: int
    max_chunk_bytes: int
    max_decoder_activations: int
    max_decoder_macs: int
    max_batch_pixels: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_batch_images: _Optional[int] = ..., max_model_bytes: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ..., max_decoder_activations: _Optional[int] = ..., max_decoder_macs: _Optional[int] = ..., max_batch_pixels: _Optional[int] = ...) -> None: ...

class Handshake(_message.Message):
    __slots__ = ("protocol_version", "has_decoder", "encoding", "limits", "session_dir", "output_format", "durable_images", "model_bytes_held", "receiver")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HAS_DECODER_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    SESSION_DIR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    DURABLE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_BYTES_HELD_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    has_decoder: bool
    encoding: LatentEncoding
    limits: Limits
    session_dir: str
    output_format: OutputFormat
    durable_images: int
    model_bytes_held: int
    receiver: str
    def __init__(self, protocol_version: _Optional[int] = ..., has_decoder: _Optional[bool] = ..., encoding: _Optional[_Union[LatentEncoding, str]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., session_dir: _Optional[str] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., durable_images: _Optional[int] = ..., model_bytes_held: _Optional[int] = ..., receiver: _Optional[str] = ...) -> None: ...

class DurableImages(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: bytes
    def __init__(self, keys: _Optional[bytes] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("offset", "data", "last")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    last: bool
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., last: _Optional[bool] = ...) -> None: ...

class ModelAccepted(_message.Message):
    __slots__ = ("decoder_digest", "received_bytes")
    DECODER_DIGEST_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    decoder_digest: str
    received_bytes: int
    def __init__(self, decoder_digest: _Optional[str] = ..., received_bytes: _Optional[int] = ...) -> None: ...

class LatentBatch(_message.Message):
    __slots__ = ("decoder_digest", "encoding", "latent_dim", "first_seq", "count", "image_shape", "names", "name_pattern", "values", "payload", "checksum", "shapes", "sizes")
    DECODER_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    NAME_PATTERN_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    SHAPES_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    decoder_digest: str
    encoding: LatentEncoding
    latent_dim: int
    first_seq: int
    count: int
    image_shape: _containers.RepeatedScalarFieldContainer[int]
    names: bytes
    name_pattern: NamePattern
    values: _containers.RepeatedScalarFieldContainer[float]
    payload: bytes
    checksum: int
    shapes: _containers.RepeatedCompositeFieldContainer[ImageShape]
    sizes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, decoder_digest: _Optional[str] = ..., encoding: _Optional[_Union[LatentEncoding, str]] = ..., latent_dim: _Optional[int] = ..., first_seq: _Optional[int] = ..., count: _Optional[int] = ..., image_shape: _Optional[_Iterable[int]] = ..., names: _Optional[bytes] = ..., name_pattern: _Optional[_Union[NamePattern, _Mapping]] = ..., values: _Optional[_Iterable[float]] = ..., payload: _Optional[bytes] = ..., checksum: _Optional[int] = ..., shapes: _Optional[_Iterable[_Union[ImageShape, _Mapping]]] = ..., sizes: _Optional[_Iterable[int]] = ...) -> None: ...

class NamePattern(_message.Message):
    __slots__ = ("prefix", "first", "width", "suffix")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    first: int
    width: int
    suffix: str
    def __init__(self, prefix: _Optional[str] = ..., first: _Optional[int] = ..., width: _Optional[int] = ..., suffix: _Optional[str] = ...) -> None: ...

class ImageFailure(_message.Message):
    __slots__ = ("seq", "error")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    seq: int
    error: str
    def __init__(self, seq: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class AckBatch(_message.Message):
    __slots__ = ("first_seq", "count", "failures", "resend", "checksum")
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    RESEND_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    first_seq: int
    count: int
    failures: _containers.RepeatedCompositeFieldContainer[ImageFailure]
    resend: bool
    checksum: int
    def __init__(self, first_seq: _Optional[int] = ..., count: _Optional[int] = ..., failures: _Optional[_Iterable[_Union[ImageFailure, _Mapping]]] = ..., resend: _Optional[bool] = ..., checksum: _Optional[int] = ...) -> None: ...

class Finish(_message.Message):
    __slots__ = ("images_sent",)
    IMAGES_SENT_FIELD_NUMBER: _ClassVar[int]
    images_sent: int
    def __init__(self, images_sent: _Optional[int] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("images_written", "images_failed")
    IMAGES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FAILED_FIELD_NUMBER: _ClassVar[int]
    images_written: int
    images_failed: int
    def __init__(self, images_written: _Optional[int] = ..., images_failed: _Optional[int] = ...) -> None: ...

class SenderMessage(_message.Message):
    __slots__ = ("hello", "model_chunk", "latent_batch", "finish")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    MODEL_CHUNK_FIELD_NUMBER: _ClassVar[int]
    LATENT_BATCH_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    model_chunk: ModelChunk
    latent_batch: LatentBatch
    finish: Finish
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., model_chunk: _Optional[_Union[ModelChunk, _Mapping]] = ..., latent_batch: _Optional[_Union[LatentBatch, _Mapping]] = ..., finish: _Optional[_Union[Finish, _Mapping]] = ...) -> None: ...

class ReceiverMessage(_message.Message):
    __slots__ = ("handshake", "model_accepted", "acks", "summary", "durable")
    HANDSHAKE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DURABLE_FIELD_NUMBER: _ClassVar[int]
    handshake: Handshake
    model_accepted: ModelAccepted
    acks: AckBatch
    summary: Summary
    durable: DurableImages
    def __init__(self, handshake: _Optional[_Union[Handshake, _Mapping]] = ..., model_accepted: _Optional[_Union[ModelAccepted, _Mapping]] = ..., acks: _Optional[_Union[AckBatch, _Mapping]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ..., durable: _Optional[_Union[DurableImages, _Mapping]] = ...) -> None: ...
