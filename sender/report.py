"""What a send did, image by image: the report that send_images returns and the CLI renders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from latentlink.shared.metrics import Quality

__all__ = ["SendReport", "StreamFailure", "merge_reports"]


@dataclass(frozen=True)
class StreamFailure:
    """Why a session ended early, as facts; the CLI turns them into advice."""

    status: str  # the gRPC status code's name, or "PROTOCOL" when the receiver broke the protocol
    details: str
    reached: bool  # a receiver answered with a handshake in some attempt
    busy: bool = False  # refused for want of a free session slot, until --retry-for ran out

    def __str__(self) -> str:
        return self.details if self.status == "PROTOCOL" else f"{self.status}: {self.details}"


@dataclass
class SendReport:
    """What happened to every image the sender read."""

    images: int = 0
    sent: int = 0  # images whose latents went out
    written: dict[str, str] = field(default_factory=dict)  # name -> path on the receiver
    failed: dict[str, str] = field(default_factory=dict)  # name -> reason
    already_in_place: int = 0  # written before this run (same name, same latents): not sent again
    model_bytes: int = 0  # decoder bytes this run uploaded (each once, however often the link broke)
    model_bytes_base: int | None = field(default=None, repr=False)  # of it, what the receiver held already
    payload_bytes: int = 0  # the latents alone (bitstream or raw values)
    pixels_sent: int = 0  # height x width of every image sent
    wire_bytes: int = 0  # everything both ways after the handshake, gRPC message framing included
    input_sizes: dict[str, int] = field(default_factory=dict, repr=False)  # name -> its input's bytes, if read
    encoding: str = ""
    session: str = ""
    session_dir: str = ""  # where the receiver writes, relative to its output folder
    receiver: str = ""  # the receiver of the latest handshake (its --name)
    written_on: dict[str, str] = field(default_factory=dict, repr=False)  # name -> the receiver that wrote it
    reconnects: int = 0
    resent_batches: int = 0  # batches the receiver got corrupt and asked for again
    expected_quality: Quality | None = None
    quality_images: int = 0  # how many images the expected quality was measured on
    out_of_domain: dict[str, float] = field(default_factory=dict)  # name -> predicted PSNR, far under the model's
    skipped: dict[str, str] = field(default_factory=dict)  # files a folder search left out, and why
    elapsed_s: float = 0.0
    first_sent_at: float | None = None  # epoch seconds when the first latents went on the wire
    first_written_at: float | None = None  # ... and when the receiver first acknowledged images written
    streams: list[SendReport] = field(default_factory=list)  # per parallel session, when there were several
    failure: StreamFailure | None = None  # why the session ended early, if it did
    sent_names: set[str] = field(default_factory=set, repr=False)  # every image this run put on the wire

    @property
    def wire_bits_per_pixel(self) -> float | None:
        """Bits on the wire per pixel sent (images of any size), or None when nothing was sent."""
        return 8 * self.wire_bytes / self.pixels_sent if self.pixels_sent else None

    @property
    def input_bytes(self) -> int:
        """The bytes of the inputs of every image read (files' sizes; an array's bytes per image), each once."""
        return sum(self.input_sizes.values())

    def record_read(self, names: Sequence[str], sizes: Sequence[int]) -> None:
        """Images were read, their inputs of these sizes (an image read again after a reconnect counts once)."""
        self.input_sizes.update(zip(names, sizes, strict=True))

    def record_written(self, names: Sequence[str], paths: Sequence[str] | str) -> None:
        """Images are durable on the current receiver, each at its path under the output folder (one `paths`
        for all: an npz batch)."""
        self.written.update(dict.fromkeys(names, paths) if isinstance(paths, str) else zip(names, paths, strict=True))
        self.written_on.update(dict.fromkeys(names, self.receiver))

    def placement(self) -> dict[str, list[str]]:
        """Receiver -> the names it wrote, in the order acknowledged: more than one after a failover."""
        by_receiver: dict[str, list[str]] = {}
        for name, receiver in self.written_on.items():
            by_receiver.setdefault(receiver, []).append(name)
        return by_receiver

    @property
    def moved(self) -> bool:
        """Some session of this report was written on more than one receiver (a failover behind a proxy)."""
        return any(len(set(r.written_on.values())) > 1 for r in (self.streams or [self]))

    @property
    def error(self) -> str | None:
        return None if self.failure is None else str(self.failure)

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.failed and len(self.written) == self.images


def merge_reports(reports: Sequence[SendReport], session: str) -> SendReport:
    """One report for several sessions: counts add up, every image keeps its own outcome."""
    merged = SendReport(session=session, streams=list(reports))
    for report in reports:
        for name in ("images", "sent", "already_in_place", "model_bytes", "payload_bytes", "wire_bytes"):
            setattr(merged, name, getattr(merged, name) + getattr(report, name))
        for name in ("reconnects", "resent_batches", "quality_images", "pixels_sent"):
            setattr(merged, name, getattr(merged, name) + getattr(report, name))
        merged.input_sizes.update(report.input_sizes)
        merged.written.update(report.written)
        merged.written_on.update(report.written_on)
        merged.failed.update(report.failed)
        merged.out_of_domain.update(report.out_of_domain)
        merged.encoding = merged.encoding or report.encoding
        merged.failure = merged.failure or report.failure
    merged.session_dir = ", ".join(dict.fromkeys(r.session_dir for r in reports if r.session_dir))
    merged.elapsed_s = max(r.elapsed_s for r in reports)
    sent_at = [r.first_sent_at for r in reports if r.first_sent_at is not None]
    written_at = [r.first_written_at for r in reports if r.first_written_at is not None]
    merged.first_sent_at = min(sent_at, default=None)
    merged.first_written_at = min(written_at, default=None)
    measured = [r for r in reports if r.expected_quality is not None and r.quality_images]
    if measured:
        weight = sum(r.quality_images for r in measured)
        mse = sum(r.expected_quality.mse * r.quality_images for r in measured) / weight
        merged.expected_quality = Quality.from_mse(mse)
    return merged
