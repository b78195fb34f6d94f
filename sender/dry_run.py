"""`sender --dry-run`: what a send would cost and give, computed locally without connecting."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from latentlink.sender.encode import BatchEncoder, QualityMeter, code_photos, drop_images, out_of_domain_psnr
from latentlink.sender.parallel import name_clashes
from latentlink.sender.read_ahead import load_batch
from latentlink.sender.report import SendReport
from latentlink.shared.image_io import SourceImage
from latentlink.shared.model_format import network_to_bytes
from latentlink.shared.photo_codec import CodedImage
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.protocol import DEFAULT_BATCH_IMAGES, MAX_BATCH_PIXELS, MAX_MESSAGE_BYTES
from latentlink.shared.serde import batch_pixels, latents_to_batch, photo_batches, wire_latents

__all__ = ["dry_run"]


def dry_run(
    sources: Sequence[SourceImage],
    encoder: BatchEncoder,
    encoding: int,
    batch_size: int = DEFAULT_BATCH_IMAGES,
    on_progress: Callable[[int, int], None] = lambda images, wire_bytes: None,
    min_psnr: float | None = None,
) -> SendReport:
    """Encodes every image exactly as a send would, and predicts bytes on the wire and quality.

    Wire bytes count each latent batch message as framed on the stream, and an
    acknowledgement per batch; the decoder transfer a receiver without it needs
    is reported as `model_bytes`. The quality covers every readable image that
    would be sent; with `min_psnr`, images predicted below it would fail.
    """
    model = encoder.model
    report = SendReport(images=len(sources))
    report.failed.update(clashes := name_clashes(sources))
    sources = [s for s in sources if s.name not in clashes]
    report.encoding = pb.LatentEncoding.Name(encoding).removeprefix("LATENT_ENCODING_").lower()
    report.model_bytes = len(network_to_bytes(model.decoder.network))
    quality = QualityMeter(exact_images=len(sources))
    for first in range(0, len(sources), batch_size):
        loaded = load_batch(sources[first : first + batch_size])
        report.failed.update(loaded.failed)
        report.record_read(loaded.names, loaded.input_bytes)
        names, pixels, wire_bytes = loaded.names, loaded.pixels, 0
        if encoder.any_size:
            wire_bytes = _photo_batches(encoder, loaded, quality, min_psnr, report, first)
            on_progress(min(batch_size, len(sources) - first), wire_bytes)
            continue
        if names:
            latents = encoder.encode(pixels)
            reconstructed = encoder.reconstruct(wire_latents(encoding, latents))
            if rejected := quality.gate(names, pixels, reconstructed, min_psnr):
                report.failed.update(rejected)
                names, latents = drop_images(names, latents, rejected)
        if names:
            batch = latents_to_batch(
                model.decoder.digest, encoding, first, names, model.image_shape, latents, encoder.tables
            )
            wire_bytes = _count(report, batch)
        on_progress(min(batch_size, len(sources) - first), wire_bytes)
    report.expected_quality = quality.result()
    report.quality_images = quality.sampled
    report.out_of_domain = quality.below(out_of_domain_psnr(model))
    return report


def _photo_batches(
    encoder: BatchEncoder, loaded, quality: QualityMeter, min_psnr, report: SendReport, first: int
) -> int:
    """Codes a loaded batch of images of any size as a send would, within the default limits; returns wire bytes."""
    coded = []
    for item in code_photos(
        encoder, loaded.names, loaded.pixels, quality, min_psnr, MAX_BATCH_PIXELS, MAX_MESSAGE_BYTES // 2
    ):
        if isinstance(item, CodedImage):
            coded.append(item)
        else:
            report.failed[item[0]] = item[1]
    model = encoder.model
    return sum(_count(report, batch) for batch in photo_batches(model.decoder.digest, coded, model.latent_dim, first))


def _count(report: SendReport, batch: pb.LatentBatch) -> int:
    """Adds a batch that would be sent, and its acknowledgement, to the report; returns their wire bytes."""
    acks = pb.ReceiverMessage(acks=pb.AckBatch(first_seq=batch.first_seq, count=batch.count))
    report.payload_bytes += len(batch.payload) + 8 * len(batch.values)
    report.pixels_sent += batch_pixels(batch)
    wire_bytes = 5 + pb.SenderMessage(latent_batch=batch).ByteSize() + 5 + acks.ByteSize()
    report.wire_bytes += wire_bytes
    report.sent += batch.count
    return wire_bytes
