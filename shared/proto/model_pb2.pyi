from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT64: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]

class Activation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVATION_UNSPECIFIED: _ClassVar[Activation]
    ACTIVATION_LINEAR: _ClassVar[Activation]
    ACTIVATION_RELU: _ClassVar[Activation]
    ACTIVATION_SIGMOID: _ClassVar[Activation]
    ACTIVATION_TANH: _ClassVar[Activation]
    ACTIVATION_LEAKY_RELU: _ClassVar[Activation]

class Padding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PADDING_UNSPECIFIED: _ClassVar[Padding]
    PADDING_SAME: _ClassVar[Padding]
    PADDING_VALID: _ClassVar[Padding]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_ENCODER: _ClassVar[Role]
    ROLE_DECODER: _ClassVar[Role]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT64: DType
DTYPE_INT32: DType
ACTIVATION_UNSPECIFIED: Activation
ACTIVATION_LINEAR: Activation
ACTIVATION_RELU: Activation
ACTIVATION_SIGMOID: Activation
ACTIVATION_TANH: Activation
ACTIVATION_LEAKY_RELU: Activation
PADDING_UNSPECIFIED: Padding
PADDING_SAME: Padding
PADDING_VALID: Padding
ROLE_UNSPECIFIED: Role
ROLE_ENCODER: Role
ROLE_DECODER: Role

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Dense(_message.Message):
    __slots__ = ("activation", "kernel", "bias")
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    activation: Activation
    kernel: Tensor
    bias: Tensor
    def __init__(self, activation: _Optional[_Union[Activation, str]] = ..., kernel: _Optional[_Union[Tensor, _Mapping]] = ..., bias: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Conv2D(_message.Message):
    __slots__ = ("stride", "padding", "activation", "kernel", "bias")
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    stride: int
    padding: Padding
    activation: Activation
    kernel: Tensor
    bias: Tensor
    def __init__(self, stride: _Optional[int] = ..., padding: _Optional[_Union[Padding, str]] = ..., activation: _Optional[_Union[Activation, str]] = ..., kernel: _Optional[_Union[Tensor, _Mapping]] = ..., bias: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Conv2DTranspose(_message.Message):
    __slots__ = ("stride", "padding", "activation", "kernel", "bias")
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    stride: int
    padding: Padding
    activation: Activation
    kernel: Tensor
    bias: Tensor
    def __init__(self, stride: _Optional[int] = ..., padding: _Optional[_Union[Padding, str]] = ..., activation: _Optional[_Union[Activation, str]] = ..., kernel: _Optional[_Union[Tensor, _Mapping]] = ..., bias: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Reshape(_message.Message):
    __slots__ = ("shape",)
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, shape: _Optional[_Iterable[int]] = ...) -> None: ...

class Flatten(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Affine(_message.Message):
    __slots__ = ("scale", "offset")
    SCALE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    scale: float
    offset: float
    def __init__(self, scale: _Optional[float] = ..., offset: _Optional[float] = ...) -> None: ...

class GDN(_message.Message):
    __slots__ = ("inverse", "beta", "gamma")
    INVERSE_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    inverse: bool
    beta: Tensor
    gamma: Tensor
    def __init__(self, inverse: _Optional[bool] = ..., beta: _Optional[_Union[Tensor, _Mapping]] = ..., gamma: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("dense", "conv2d", "conv2d_transpose", "reshape", "flatten", "affine", "gdn")
    DENSE_FIELD_NUMBER: _ClassVar[int]
    CONV2D_FIELD_NUMBER: _ClassVar[int]
    CONV2D_TRANSPOSE_FIELD_NUMBER: _ClassVar[int]
    RESHAPE_FIELD_NUMBER: _ClassVar[int]
    FLATTEN_FIELD_NUMBER: _ClassVar[int]
    AFFINE_FIELD_NUMBER: _ClassVar[int]
    GDN_FIELD_NUMBER: _ClassVar[int]
    dense: Dense
    conv2d: Conv2D
    conv2d_transpose: Conv2DTranspose
    reshape: Reshape
    flatten: Flatten
    affine: Affine
    gdn: GDN
    def __init__(self, dense: _Optional[_Union[Dense, _Mapping]] = ..., conv2d: _Optional[_Union[Conv2D, _Mapping]] = ..., conv2d_transpose: _Optional[_Union[Conv2DTranspose, _Mapping]] = ..., reshape: _Optional[_Union[Reshape, _Mapping]] = ..., flatten: _Optional[_Union[Flatten, _Mapping]] = ..., affine: _Optional[_Union[Affine, _Mapping]] = ..., gdn: _Optional[_Union[GDN, _Mapping]] = ...) -> None: ...

class IntegerConv(_message.Message):
    __slots__ = ("transpose", "stride", "kernel", "bias", "shift", "relu")
    TRANSPOSE_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    SHIFT_FIELD_NUMBER: _ClassVar[int]
    RELU_FIELD_NUMBER: _ClassVar[int]
    transpose: bool
    stride: int
    kernel: Tensor
    bias: Tensor
    shift: int
    relu: bool
    def __init__(self, transpose: _Optional[bool] = ..., stride: _Optional[int] = ..., kernel: _Optional[_Union[Tensor, _Mapping]] = ..., bias: _Optional[_Union[Tensor, _Mapping]] = ..., shift: _Optional[int] = ..., relu: _Optional[bool] = ...) -> None: ...

class HyperPrior(_message.Message):
    __slots__ = ("side_channels", "layers", "thresholds", "side", "scales", "means", "mean_fraction_bits", "context", "context_mix")
    SIDE_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    SCALES_FIELD_NUMBER: _ClassVar[int]
    MEANS_FIELD_NUMBER: _ClassVar[int]
    MEAN_FRACTION_BITS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_MIX_FIELD_NUMBER: _ClassVar[int]
    side_channels: int
    layers: _containers.RepeatedCompositeFieldContainer[IntegerConv]
    thresholds: Tensor
    side: EntropyModel
    scales: EntropyModel
    means: bool
    mean_fraction_bits: int
    context: _containers.RepeatedCompositeFieldContainer[IntegerConv]
    context_mix: _containers.RepeatedCompositeFieldContainer[IntegerConv]
    def __init__(self, side_channels: _Optional[int] = ..., layers: _Optional[_Iterable[_Union[IntegerConv, _Mapping]]] = ..., thresholds: _Optional[_Union[Tensor, _Mapping]] = ..., side: _Optional[_Union[EntropyModel, _Mapping]] = ..., scales: _Optional[_Union[EntropyModel, _Mapping]] = ..., means: _Optional[bool] = ..., mean_fraction_bits: _Optional[int] = ..., context: _Optional[_Iterable[_Union[IntegerConv, _Mapping]]] = ..., context_mix: _Optional[_Iterable[_Union[IntegerConv, _Mapping]]] = ...) -> None: ...

class EntropyModel(_message.Message):
    __slots__ = ("precision", "offsets", "lengths", "pmfs")
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    LENGTHS_FIELD_NUMBER: _ClassVar[int]
    PMFS_FIELD_NUMBER: _ClassVar[int]
    precision: int
    offsets: Tensor
    lengths: Tensor
    pmfs: Tensor
    def __init__(self, precision: _Optional[int] = ..., offsets: _Optional[_Union[Tensor, _Mapping]] = ..., lengths: _Optional[_Union[Tensor, _Mapping]] = ..., pmfs: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class ContextPrior(_message.Message):
    __slots__ = ("layers", "fraction_bits", "mean_bins", "thresholds", "tables")
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    FRACTION_BITS_FIELD_NUMBER: _ClassVar[int]
    MEAN_BINS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    layers: _containers.RepeatedCompositeFieldContainer[IntegerConv]
    fraction_bits: int
    mean_bins: int
    thresholds: Tensor
    tables: EntropyModel
    def __init__(self, layers: _Optional[_Iterable[_Union[IntegerConv, _Mapping]]] = ..., fraction_bits: _Optional[int] = ..., mean_bins: _Optional[int] = ..., thresholds: _Optional[_Union[Tensor, _Mapping]] = ..., tables: _Optional[_Union[EntropyModel, _Mapping]] = ...) -> None: ...

class Network(_message.Message):
    __slots__ = ("format_version", "role", "model_name", "input_shape", "output_shape", "layers", "entropy_model", "hyperprior", "hyper_analysis", "context_prior")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    ENTROPY_MODEL_FIELD_NUMBER: _ClassVar[int]
    HYPERPRIOR_FIELD_NUMBER: _ClassVar[int]
    HYPER_ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_PRIOR_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    role: Role
    model_name: str
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    output_shape: _containers.RepeatedScalarFieldContainer[int]
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    entropy_model: EntropyModel
    hyperprior: HyperPrior
    hyper_analysis: _containers.RepeatedCompositeFieldContainer[Layer]
    context_prior: ContextPrior
    def __init__(self, format_version: _Optional[int] = ..., role: _Optional[_Union[Role, str]] = ..., model_name: _Optional[str] = ..., input_shape: _Optional[_Iterable[int]] = ..., output_shape: _Optional[_Iterable[int]] = ..., layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ..., entropy_model: _Optional[_Union[EntropyModel, _Mapping]] = ..., hyperprior: _Optional[_Union[HyperPrior, _Mapping]] = ..., hyper_analysis: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ..., context_prior: _Optional[_Union[ContextPrior, _Mapping]] = ...) -> None: ...
