"""Converts between Keras models and portable `Network` messages."""

from __future__ import annotations

import numpy as np

from latentlink.shared.model_format import FORMAT_VERSION, NetworkInfo, tensor_from_array, tensor_to_array
from latentlink.shared.proto import model_pb2
from latentlink.shared.tf_import import tensorflow

tensorflow()  # imports TensorFlow and Keras quietly, without writing to ~/.keras
import keras  # noqa: E402

__all__ = ["GDN", "OneFilterConv2D", "keras_from_network", "layers_from_keras", "network_from_keras"]

_ACTIVATION_NAMES = {
    model_pb2.ACTIVATION_LINEAR: "linear",
    model_pb2.ACTIVATION_RELU: "relu",
    model_pb2.ACTIVATION_SIGMOID: "sigmoid",
    model_pb2.ACTIVATION_TANH: "tanh",
    model_pb2.ACTIVATION_LEAKY_RELU: "leaky_relu",
}
_ACTIVATION_CODES = {name: code for code, name in _ACTIVATION_NAMES.items()}
_PADDING_NAMES = {model_pb2.PADDING_SAME: "same", model_pb2.PADDING_VALID: "valid"}
_PADDING_CODES = {name: code for code, name in _PADDING_NAMES.items()}


def network_from_keras(model: keras.Sequential, role: int, model_name: str) -> model_pb2.Network:
    """Describes a Sequential model of allowlisted layers as a `Network` (unknown height/width: 0, any size)."""
    return model_pb2.Network(
        format_version=FORMAT_VERSION,
        role=role,
        model_name=model_name,
        input_shape=[d or 0 for d in model.input_shape[1:]],
        output_shape=[d or 0 for d in model.output_shape[1:]],
        layers=layers_from_keras(model),
    )


def layers_from_keras(model: keras.Sequential) -> list[model_pb2.Layer]:
    """The portable form of each layer of a Sequential model."""
    return [_layer_from_keras(layer) for layer in model.layers]


def keras_from_network(info: NetworkInfo) -> keras.Sequential:
    """Builds the Keras model a validated network describes (no code is loaded)."""
    return _sequential(info.input_shape, info.network.layers, f"{info.network.model_name}-{info.digest[:12]}")


def _sequential(input_shape: tuple[int, ...], portable_layers, name: str) -> keras.Sequential:
    layers: list[keras.layers.Layer] = [keras.Input(tuple(d or None for d in input_shape))]
    weights: list[np.ndarray] = []
    for index, layer in enumerate(portable_layers):
        kind = layer.WhichOneof("kind")
        spec = getattr(layer, kind)
        if kind == "affine":
            layers.append(keras.layers.Rescaling(spec.scale, offset=spec.offset))
            continue
        if kind == "gdn":
            layers.append(GDN(inverse=spec.inverse))
            weights += [tensor_to_array(spec.beta), tensor_to_array(spec.gamma)]
            continue
        if kind == "flatten":
            layers.append(keras.layers.Flatten())
            continue
        if kind == "reshape":
            layers.append(keras.layers.Reshape(tuple(spec.shape)))
            continue
        kernel = tensor_to_array(spec.kernel, f"layer {index} kernel")
        activation = _ACTIVATION_NAMES[spec.activation]
        if kind == "dense":
            layers.append(keras.layers.Dense(kernel.shape[1], activation=activation))
        elif kind == "conv2d" and kernel.shape[3] == 1:
            layers.append(OneFilterConv2D(kernel.shape[:2], spec.stride, _PADDING_NAMES[spec.padding], activation))
        else:
            cls = keras.layers.Conv2D if kind == "conv2d" else keras.layers.Conv2DTranspose
            filters = kernel.shape[3] if kind == "conv2d" else kernel.shape[2]
            layers.append(
                cls(
                    filters,
                    kernel.shape[:2],
                    strides=spec.stride,
                    padding=_PADDING_NAMES[spec.padding],
                    activation=activation,
                )
            )
        weights += [kernel, tensor_to_array(spec.bias, f"layer {index} bias")]
    model = keras.Sequential(layers, name=name)
    model.set_weights(weights)
    return model


def hyper_analysis_from_network(info: NetworkInfo) -> keras.Sequential:
    """Builds the Keras model of an any-size encoder's hyper-analysis (y -> z)."""
    return _sequential(info.output_shape, info.network.hyper_analysis, f"{info.network.model_name}-hyper")


class GDN(keras.layers.Layer):
    """Generalized divisive normalization with fixed beta and gamma (see GDN in model.proto).

    y_i = x_i / sqrt(beta_i + sum_j gamma[j, i] x_j^2); the inverse multiplies.
    Training uses a subclass that keeps beta and gamma positive by construction.
    """

    def __init__(self, inverse: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.inverse = inverse

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        self._beta = self.add_weight(shape=(channels,), initializer="ones", name="beta")
        self._gamma = self.add_weight(shape=(channels, channels), initializer="zeros", name="gamma")

    @property
    def beta(self):
        return self._beta

    @property
    def gamma(self):
        return self._gamma

    def call(self, x):
        ops = keras.ops
        norm = ops.sqrt(ops.tensordot(ops.square(x), self.gamma, axes=[[3], [0]]) + self.beta)
        return x * norm if self.inverse else x / norm

    def get_config(self) -> dict:
        return {**super().get_config(), "inverse": self.inverse}


class OneFilterConv2D(keras.layers.Layer):
    """A Conv2D with a single output channel, computed as a depthwise convolution summed over channels.

    The same function as keras' Conv2D with the same kernel and bias (to float
    rounding), but CPU kernels handle one-channel outputs poorly: this form makes
    the shipped decoders about 15% faster. Built by our own code from a validated
    spec; nothing in a model file chooses it.
    """

    def __init__(self, kernel_size: tuple[int, int], stride: int, padding: str, activation: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kernel_size, self.stride, self.padding = tuple(kernel_size), stride, padding
        self.activation_name, self.activation = activation, keras.activations.get(activation)

    def build(self, input_shape) -> None:
        self.kernel = self.add_weight(shape=(*self.kernel_size, input_shape[-1], 1), name="kernel")
        self.bias = self.add_weight(shape=(1,), name="bias")

    def call(self, inputs):
        ops = keras.ops
        per_channel = ops.depthwise_conv(inputs, self.kernel, self.stride, self.padding)
        return self.activation(ops.sum(per_channel, axis=-1, keepdims=True) + self.bias)


def _layer_from_keras(layer: keras.layers.Layer) -> model_pb2.Layer:
    kind = type(layer).__name__
    if isinstance(layer, OneFilterConv2D):
        kernel, bias = (tensor_from_array(w) for w in layer.get_weights())
        conv = model_pb2.Conv2D(
            stride=layer.stride,
            padding=_PADDING_CODES[layer.padding],
            activation=_ACTIVATION_CODES[layer.activation_name],
            kernel=kernel,
            bias=bias,
        )
        return model_pb2.Layer(conv2d=conv)
    if isinstance(layer, GDN):
        beta, gamma = (tensor_from_array(keras.ops.convert_to_numpy(w)) for w in (layer.beta, layer.gamma))
        return model_pb2.Layer(gdn=model_pb2.GDN(inverse=layer.inverse, beta=beta, gamma=gamma))
    if kind == "Rescaling":
        return model_pb2.Layer(affine=model_pb2.Affine(scale=float(layer.scale), offset=float(layer.offset)))
    if kind == "Flatten":
        return model_pb2.Layer(flatten=model_pb2.Flatten())
    if kind == "Reshape":
        return model_pb2.Layer(reshape=model_pb2.Reshape(shape=layer.target_shape))
    config = layer.get_config()
    activation = _ACTIVATION_CODES.get(config["activation"]) if isinstance(config["activation"], str) else None
    if activation is None or not config.get("use_bias", False):
        raise ValueError(
            f'layer "{layer.name}": activation "{config["activation"]}" or bias-free layers are not portable'
        )
    kernel, bias = (tensor_from_array(w) for w in layer.get_weights())
    if kind == "Dense":
        return model_pb2.Layer(dense=model_pb2.Dense(activation=activation, kernel=kernel, bias=bias))
    if kind in ("Conv2D", "Conv2DTranspose"):
        strides = tuple(config["strides"])
        if strides[0] != strides[1] or tuple(config["dilation_rate"]) != (1, 1):
            raise ValueError(f'layer "{layer.name}": only equal strides and no dilation are portable')
        if config.get("output_padding") is not None or config["data_format"] != "channels_last":
            raise ValueError(f'layer "{layer.name}": output padding / channels_first not portable')
        fields = dict(
            stride=strides[0],
            padding=_PADDING_CODES[config["padding"]],
            activation=activation,
            kernel=kernel,
            bias=bias,
        )
        if kind == "Conv2D":
            return model_pb2.Layer(conv2d=model_pb2.Conv2D(**fields))
        return model_pb2.Layer(conv2d_transpose=model_pb2.Conv2DTranspose(**fields))
    raise ValueError(f'layer "{layer.name}" of kind {kind} has no portable form')
