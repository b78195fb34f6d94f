"""One session on the receiver, in plain Python: check the request, decode batches, write them durably, journal them."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from latentlink.receiver import decode_budget
from latentlink.receiver.journal import SessionJournal
from latentlink.receiver.log_text import peer_text
from latentlink.receiver.model_store import is_digest
from latentlink.receiver.output import UnsafeNameError, checked_name, output_file, write_files_durably
from latentlink.receiver.png_workers import PendingPngs, PngWorkers
from latentlink.shared.image_io import batch_file_name, output_name
from latentlink.shared.model_format import is_any_size
from latentlink.shared.network_runtime import CompiledNetwork, decode_images, decode_photo
from latentlink.shared.protocol import MAX_MODEL_BYTES, PROTOCOL_VERSION, SENDER_ID, SESSION_NAME
from latentlink.shared.serde import (
    BatchOutcome,
    CorruptBatch,
    DecodedBatch,
    Encoding,
    OutputFormat,
    ProtocolError,
    SessionRequest,
    Tables,
    decodable_encodings,
    image_keys,
)

__all__ = ["DecodedImages", "ReceiverSession", "check_request", "pick_encoding"]


def check_request(request: SessionRequest) -> None:
    """Refuses a hello this receiver cannot serve; raises ProtocolError."""
    if request.protocol_version != PROTOCOL_VERSION:
        raise ProtocolError(
            "FAILED_PRECONDITION",
            f"protocol version mismatch: sender speaks {request.protocol_version}, receiver speaks {PROTOCOL_VERSION}",
        )
    if not SESSION_NAME.fullmatch(request.session):
        raise ProtocolError(
            "INVALID_ARGUMENT",
            f'session name "{peer_text(request.session, 80)}" must be 1-64 of [A-Za-z0-9._-], not starting with a dot',
        )
    if request.sender_id and not SENDER_ID.fullmatch(request.sender_id):
        raise ProtocolError("INVALID_ARGUMENT", "sender_id must be 16-64 of [A-Za-z0-9_-]")
    if not is_digest(request.decoder_digest):
        raise ProtocolError(
            "INVALID_ARGUMENT", f'"{peer_text(request.decoder_digest, 80)}" is not a SHA-256 decoder digest'
        )
    if not 0 < request.decoder_bytes <= MAX_MODEL_BYTES:
        raise ProtocolError(
            "RESOURCE_EXHAUSTED", f"decoder of {request.decoder_bytes} bytes; limit is {MAX_MODEL_BYTES}"
        )


def pick_encoding(request: SessionRequest) -> Encoding:
    """Takes the sender's most preferred encoding that this receiver can decode."""
    possible = decodable_encodings(request.has_entropy_model, is_any_size(request.image_shape))
    for encoding in request.encodings:
        if encoding in possible:
            return Encoding(encoding)
    raise ProtocolError("FAILED_PRECONDITION", "no latent encoding in common with the sender")


@dataclass(frozen=True)
class DecodedImages:
    """A batch turned into pixels: what to write, and the images that already failed.

    The decoded images' fields are parallel lists, in the batch's order.
    """

    first_seq: int
    count: int
    failures: dict[int, str]
    seqs: list[int]
    names: list[str]
    targets: list[str]  # each image's file (PNG), or its name in the batch's npz
    pixels: np.ndarray | list[np.ndarray]  # a stack (digits), or an image each (photos)
    vectors: np.ndarray | list[np.ndarray]  # each image's latents, whose keys the journal records
    pngs: PendingPngs | None  # the images' PNG bytes, when the output is PNG


@dataclass
class ReceiverSession:
    """What one stream of a session has agreed on and done so far."""

    name: str
    folder: Path
    output_format: OutputFormat
    digest: str
    decoder: CompiledNetwork
    tables: Tables
    journal: SessionJournal
    png: PngWorkers = field(default_factory=PngWorkers)  # the receiver's PNG encoders, shared by its sessions
    written: int = 0
    failed: int = 0
    bytes_in: int = 0
    decode_s: float = 0.0  # wall time decoding latents to pixels
    write_s: float = 0.0  # wall time waiting for the PNG workers and durably writing files
    resend_asked: set[int] = field(default_factory=set)  # first_seq of batches asked for again
    lock: threading.Lock = field(default_factory=threading.Lock)

    def corrupt(self, batch: CorruptBatch) -> BatchOutcome:
        """A batch that failed its checksum as a whole: asked for again once, then its images fail."""
        failures = {batch.first_seq + i: batch.reason for i in range(batch.count)}
        resend = batch.first_seq not in self.resend_asked
        self.resend_asked.add(batch.first_seq)
        if not resend:
            with self.lock:
                self.failed += batch.count
        return BatchOutcome(batch.first_seq, batch.count, failures, resend=resend)

    def decode(self, batch: DecodedBatch) -> DecodedImages:
        """Checks each image of a batch and decodes the good ones to pixels."""
        started = time.perf_counter()
        failures: dict[int, str] = {}
        # The images that pass: their rows, names, and where each goes (its file's path for PNG, its name in the
        # batch's file for npz).
        rows: list[int] = []
        names: list[str] = []
        targets: list[str] = []
        seen: set[str] = set()
        place = checked_name if self.output_format == OutputFormat.NPZ else partial(output_file, self.folder)
        photos = bool(batch.shapes)  # images of any size: integer latents, shapes checked on arrival
        finite = np.ones(len(batch.names), bool) if photos else np.all(np.isfinite(batch.latents), axis=1)
        for row, name in enumerate(batch.names):
            try:
                if not photos and batch.image_shape != self.decoder.info.output_shape:
                    raise ValueError(
                        f"image shape {list(batch.image_shape)} differs from the decoder's "
                        f"{list(self.decoder.info.output_shape)}"
                    )
                target = place(name)  # the name alone is checked, drive letters too
                if target in seen:  # across batches, the sender keeps names apart (memory stays flat)
                    raise ValueError(f'another image of this batch maps to "{output_name(name)}"')
                if not finite[row]:
                    raise ValueError("latent vector has non-finite values")
                seen.add(target)
                rows.append(row)
                names.append(name)
                targets.append(target)
            except (UnsafeNameError, ValueError) as exc:
                failures[batch.first_seq + row] = str(exc)
        vectors = batch.vectors(rows)  # digits: also what is decoded (the batch's array itself when all pass)
        if photos:
            pixels = []
            for row in rows:
                height, width, _ = batch.shapes[row]
                with decode_budget.SHARED.reserve(height * width):  # memory stays bounded across sessions
                    pixels.append(decode_photo(self.decoder, batch.latents[row], batch.shapes[row]))
        else:
            pixels = decode_images(self.decoder, vectors) if rows else []
        self.decode_s += time.perf_counter() - started
        # PNGs are encoded from now on, while this batch waits for the disk and the next one decodes
        pngs = self.png.start(pixels) if self.output_format == OutputFormat.PNG else None
        seqs = [batch.first_seq + row for row in rows]
        return DecodedImages(batch.first_seq, len(batch.names), failures, seqs, names, targets, pixels, vectors, pngs)

    def write(self, images: DecodedImages) -> BatchOutcome:
        """Durably writes a decoded batch and journals it; returns its outcome.

        Runs on a writer thread: the images' keys are hashed here, while the next batch decodes.
        """
        started = time.perf_counter()
        keys = image_keys(self.digest, images.names, images.vectors)
        errors: dict[int, str] = {}  # index in the decoded images -> why its write failed
        if images.pngs is not None:
            errors = write_files_durably(list(zip(images.targets, images.pngs.result(), strict=True)))
        elif images.seqs:  # one .npz file for the batch
            failed = write_files_durably(
                [(self.folder / batch_file_name(images.first_seq), _npz(images.targets, images.pixels))]
            )
            errors = dict.fromkeys(range(len(images.seqs)), failed[0]) if failed else {}
        failures = dict(images.failures)
        failures.update((images.seqs[i], reason) for i, reason in errors.items())
        durable = [i for i in range(len(images.seqs)) if i not in errors] if errors else range(len(images.seqs))
        with self.lock:  # photos' batches are written by several threads
            self.journal.record([images.names[i] for i in durable], [keys[i] for i in durable])
            self.failed += len(failures)
            self.written += images.count - len(failures)
            self.write_s += time.perf_counter() - started
        return BatchOutcome(images.first_seq, images.count, failures)

    def summary(self, peer: str, model_name: str, encoding: Encoding) -> dict:
        """A machine-readable record of the finished session."""
        return {
            "event": "session",
            "session": self.name,
            "peer": peer,
            "model": model_name,
            "decoder_digest": self.digest,
            "encoding": encoding.label,
            "written": self.written,
            "failed": self.failed,
            "latent_bytes": self.bytes_in,
            "decode_s": round(self.decode_s, 6),
            "write_s": round(self.write_s, 6),
        }


def _npz(names: list[str], pixels: np.ndarray | list[np.ndarray]) -> bytes:
    """A batch's .npz: `images` stacked when they share a shape, else `image_0`, `image_1`, ... (see protos)."""
    buffer = io.BytesIO()
    if isinstance(pixels, np.ndarray):
        arrays = {"images": pixels}
    elif len({image.shape for image in pixels}) == 1:
        arrays = {"images": np.stack(pixels)}
    else:
        arrays = {f"image_{i}": image for i, image in enumerate(pixels)}
    np.savez(buffer, names=np.array(names, dtype=str), **arrays)
    return buffer.getvalue()
