"""A model folder: encoder.lln, decoder.lln and a human-readable model.json card."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentlink.shared.model_format import ModelFormatError, NetworkInfo, network_to_bytes, parse_network
from latentlink.shared.proto import model_pb2
from latentlink.shared.resources import package_folder

__all__ = [
    "CARD_FILE",
    "DECODER_FILE",
    "DEFAULT_PHOTO_QUALITY",
    "DEFAULT_QUALITY",
    "PHOTO_QUALITIES",
    "ENCODER_FILE",
    "QUALITIES",
    "ModelFiles",
    "default_model_dir",
    "load_model_dir",
    "quality_model_dir",
    "save_model_dir",
    "shipped_model_dir",
    "shipped_model_dirs",
    "update_card",
]

ENCODER_FILE = "encoder.lln"
DECODER_FILE = "decoder.lln"
CARD_FILE = "model.json"


@dataclass(frozen=True)
class ModelFiles:
    """Both validated halves of a model and its card (informational only)."""

    encoder: NetworkInfo
    decoder: NetworkInfo
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.decoder.network.model_name

    @property
    def latent_dim(self) -> int:
        """The latent vector's width, or a latent tensor's channels (models for images of any size)."""
        return self.decoder.input_shape[-1]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.decoder.output_shape


# The MNIST rate-distortion ladder ships as models/q1 .. q5; q4 is the balanced default.
QUALITIES = (1, 2, 3, 4, 5)
DEFAULT_QUALITY = 4
# The photo ladder (colour or grey images of any size) ships as models/photo-q1 .. photo-q3.
PHOTO_QUALITIES = (1, 2, 3)
DEFAULT_PHOTO_QUALITY = 2


def quality_model_dir(quality: int | None, photos: bool = False) -> Path:
    """Returns the folder of a shipped ladder model: MNIST digits' (q1..q5) or photos' (photo-q1..photo-q3)."""
    qualities, default, prefix = (
        (PHOTO_QUALITIES, DEFAULT_PHOTO_QUALITY, "photo-q")
        if photos
        else (
            QUALITIES,
            DEFAULT_QUALITY,
            "q",
        )
    )
    quality = default if quality is None else quality
    if quality not in qualities:
        ladder = "photo" if photos else "MNIST"
        raise ValueError(f"quality {quality} is not one of the {ladder} ladder's {qualities}")
    return shipped_model_dir(f"{prefix}{quality}")


def shipped_model_dir(name: str) -> Path:
    """Returns the folder of a model shipped in the package, by its folder name (q4, conv-k64, ...)."""
    return package_folder("models", name)


def default_model_dir() -> Path:
    """Returns the shipped default model's folder."""
    return quality_model_dir(DEFAULT_QUALITY)


def shipped_model_dirs() -> list[Path]:
    """Returns the folders of every model shipped in the package, sorted by name."""
    return sorted(folder for folder in package_folder("models").iterdir() if (folder / DECODER_FILE).is_file())


def save_model_dir(
    folder: Path, encoder: model_pb2.Network, decoder: model_pb2.Network, card: dict[str, Any]
) -> ModelFiles:
    """Writes both halves and the card; returns the validated files."""
    folder.mkdir(parents=True, exist_ok=True)
    enc_bytes, dec_bytes = network_to_bytes(encoder), network_to_bytes(decoder)
    files = ModelFiles(
        parse_network(enc_bytes, role=model_pb2.ROLE_ENCODER),
        parse_network(dec_bytes, role=model_pb2.ROLE_DECODER),
    )
    (folder / ENCODER_FILE).write_bytes(enc_bytes)
    (folder / DECODER_FILE).write_bytes(dec_bytes)
    card = {
        **card,
        "name": files.name,
        "latent_dim": files.latent_dim,
        "encoder_digest": files.encoder.digest,
        "decoder_digest": files.decoder.digest,
        "encoder_bytes": files.encoder.size_bytes,
        "decoder_bytes": files.decoder.size_bytes,
    }
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    return ModelFiles(files.encoder, files.decoder, card)


def update_card(folder: Path, fields: dict[str, Any]) -> ModelFiles:
    """Adds fields to a model folder's card; returns the folder's files."""
    card_file = Path(folder) / CARD_FILE
    card = {**json.loads(card_file.read_text()), **fields}
    card_file.write_text(json.dumps(card, indent=2) + "\n")
    return load_model_dir(folder)


def load_model_dir(folder: Path) -> ModelFiles:
    """Reads and validates a model folder, or a shipped model named by its folder (conv-k64, ...).

    Raises `ModelFormatError` or `FileNotFoundError`.
    """
    folder = Path(folder)
    shipped = {path.name: path for path in shipped_model_dirs()}
    if not folder.is_dir() and str(folder) in shipped:
        folder = shipped[str(folder)]
    if not folder.is_dir():
        raise FileNotFoundError(
            f'model folder "{folder}" does not exist (shipped models, usable by name: {", ".join(shipped)})'
        )
    encoder = parse_network((folder / ENCODER_FILE).read_bytes(), role=model_pb2.ROLE_ENCODER)
    decoder = parse_network((folder / DECODER_FILE).read_bytes(), role=model_pb2.ROLE_DECODER)
    if encoder.output_shape != decoder.input_shape or encoder.input_shape != decoder.output_shape:
        raise ModelFormatError(f'model "{folder}": encoder and decoder shapes do not match')
    card_file = folder / CARD_FILE
    card = json.loads(card_file.read_text()) if card_file.is_file() else {}
    return ModelFiles(encoder, decoder, card)
