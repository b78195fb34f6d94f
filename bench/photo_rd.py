"""Rate-distortion on the 24 Kodak images: latentlink's photo models against JPEG, WebP, AVIF and JPEG XL.

Every codec codes each image on its own; bits per pixel count the whole file
(for latentlink the whole container: everything a receiver needs) and PSNR is
measured on the decoded 8-bit RGB image (MSE over all three channels). Both are
averaged over the images, per setting (the CompressAI convention). Published
CompressAI results are added as reference rows, and BD-rates (piecewise cubic,
over the overlapping PSNR range) compare every curve with JPEG and with WebP.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/photo_rd.py                     # all codecs, every shipped photo-* model
    .venv/bin/python bench/photo_rd.py --limit 2 --models  # quick look: 2 images, standard codecs only
    .venv/bin/python bench/photo_rd.py --models photo-q2 photo-q4 --json rd.json --crop-figure crop.png
    .venv/bin/python bench/photo_rd.py --efforts 0 1       # the photo ladder with the sender's search too
    .venv/bin/python bench/photo_rd.py --compare old/photo-q1 old/photo-q2  # and an earlier ladder, as its own curve

Tables go to stdout, progress and notes to stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import imagecodecs
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from bjontegaard import bd_rate
from PIL import Image

from latentlink.shared.model_dir import shipped_model_dirs

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parent.parent
LATENTLINK = "latentlink"
ANCHORS = ("JPEG", "WebP")

# CompressAI's published Kodak results for its MSE-trained models, quality 1..8 ("Inference (ans)", CUDA):
# the "bpp" and "psnr-rgb" lists, means over the 24 images, of
#   InterDigitalInc/CompressAI results/image/kodak/compressai-bmshj2018-factorized_mse_cuda.json
#   InterDigitalInc/CompressAI results/image/kodak/compressai-bmshj2018-hyperprior_mse_cuda.json
# both last changed in commit 3d3c9bbd92989b1cf19e122281161f7aac8ee769 and unchanged at 869a9f5d (June 2025).
REFERENCES: dict[str, tuple[list[float], list[float]]] = {
    "bmshj2018-factorized (CompressAI)": (
        [0.1226230197482639, 0.18852742513020834, 0.2878078884548611, 0.44037882486979174,
         0.6481357150607638, 0.9669765896267358, 1.351165771484375, 1.8332655164930556],
        [26.908817394289304, 28.217925699960002, 29.616915231568353, 31.27708728897609,
         32.956122820153084, 35.380922291056244, 37.39693190227357, 39.621314292092684],
    ),
    "bmshj2018-hyperprior (CompressAI)": (
        [0.13129340277777776, 0.20889282226562503, 0.3198581271701389, 0.47835625542534727,
         0.6686876085069443, 0.9388258192274304, 1.2591722276475694, 1.6602240668402775],
        [27.581536752297392, 29.196703405493214, 30.972162072759534, 32.83818257445048,
         34.52626403063645, 36.74334835426406, 38.58384824012354, 40.556865931529494],
    ),
}  # fmt: skip

# The crop figure: the red macaw's eye, facial feather lines and beak edge in kodim23.
CROP_IMAGE = "kodim23.png"
CROP_LEFT, CROP_TOP, CROP_SIZE = 400, 110, 192
CROP_DEFAULT_BPP = 0.4
KODAK_IMAGES = 24  # the images the reference rows average over


@dataclass(frozen=True)
class Codec:
    """A standard codec: its settings and an (image, setting) -> bytes encoder with its decoder."""

    name: str
    settings: tuple[int, ...]
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes], np.ndarray]


@dataclass
class Point:
    """One point of a curve: means over the images, with the per-image values they come from."""

    codec: str
    setting: str
    bpp: float
    psnr: float
    encode_s: float | None = None
    decode_s: float | None = None
    reference: bool = False
    per_image: dict[str, list[float]] = field(default_factory=dict)


def log(message: str) -> None:
    """Progress and notes, on stderr so that stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of a decoded 8-bit image, MSE over all channels."""
    mse = np.mean((original.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf")


def bits_per_pixel(data: bytes, image: np.ndarray) -> float:
    """Bits of the coded file per pixel of the image."""
    return 8 * len(data) / (image.shape[0] * image.shape[1])


def read_rgb(path: Path) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 array."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def pillow_codec(name: str, fmt: str, settings: tuple[int, ...], **options: object) -> Codec:
    """A Pillow codec whose setting is its `quality` option."""

    def encode(image: np.ndarray, quality: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt, quality=quality, **options)
        return buffer.getvalue()

    return Codec(name, settings, encode, lambda data: read_rgb(io.BytesIO(data)))


def standard_codecs() -> list[Codec]:
    """The codecs compared, with settings spanning roughly 0.1 to 1.5 bpp (mean over Kodak)."""
    return [
        # Pillow's default chroma subsampling is 4:2:0.
        pillow_codec("JPEG", "JPEG", (5, 10, 15, 20, 30, 40, 50, 60, 75, 85), optimize=True),
        pillow_codec("WebP", "WEBP", (0, 5, 10, 20, 30, 45, 60, 75, 85, 90), method=6),
        Codec(
            "AVIF",  # level is libavif's quality, 0..100; 4:4:4 is imagecodecs' default for RGB, made explicit
            (5, 15, 25, 35, 45, 55, 65, 75),
            lambda image, q: imagecodecs.avif_encode(
                image, q, speed=6, pixelformat=imagecodecs.AVIF.PIXEL_FORMAT.YUV444
            ),
            imagecodecs.avif_decode,
        ),
        Codec(
            "JPEG XL",  # level is libjxl's quality, 0..100 (cjxl -q)
            (0, 10, 25, 40, 55, 70, 80, 88),
            lambda image, q: imagecodecs.jpegxl_encode(image, q, effort=7),
            imagecodecs.jpegxl_decode,
        ),
    ]


def available(codec: Codec) -> bool:
    """Whether the codec round-trips a small RGB image here (imagecodecs may be built without it)."""
    probe = np.zeros((16, 16, 3), np.uint8)
    try:
        return codec.decode(codec.encode(probe, codec.settings[0])).shape == probe.shape
    except Exception as exc:
        log(f"note: {codec.name} skipped, not available here ({type(exc).__name__}: {exc})")
        return False


def code_image(codec: Codec, image: np.ndarray, setting: int) -> tuple[float, float, np.ndarray]:
    """Codes one image; returns its bpp, its PSNR and the decoded image."""
    data = codec.encode(image, setting)
    decoded = np.asarray(codec.decode(data))
    return bits_per_pixel(data, image), psnr(image, decoded), decoded


def measure_codec(codec: Codec, images: list[np.ndarray]) -> list[Point]:
    """One point per setting of a standard codec."""
    points = []
    for setting in codec.settings:
        bpp, quality = zip(*(code_image(codec, image, setting)[:2] for image in images), strict=True)
        point = Point(codec.name, f"q{setting}", float(np.mean(bpp)), float(np.mean(quality)))
        point.per_image = {"bpp": list(bpp), "psnr": list(quality)}
        points.append(point)
        log(f"  {codec.name} q{setting}: {point.bpp:.3f} bpp, {point.psnr:.2f} dB")
    return points


def photo_models() -> list[str]:
    """The shipped models whose name starts with photo-."""
    return [folder.name for folder in shipped_model_dirs() if folder.name.startswith("photo-")]


def run_latentlink(model: str, image: np.ndarray, effort: int = 0) -> tuple[float, float, np.ndarray, float, float]:
    """Compresses and decompresses one image; returns bpp, PSNR, the decoded image and both times in seconds."""
    from latentlink import compress, decompress

    start = time.perf_counter()
    data = compress([image], model=model, effort=effort)
    coded = time.perf_counter()
    folder = model if Path(model).is_dir() else None  # a compared folder is not among the shipped models
    decoded = np.asarray(decompress(data, folder))
    done = time.perf_counter()
    if decoded.dtype != np.uint8 or decoded.shape != (1, *image.shape):
        raise ValueError(f"decompress returned {decoded.dtype} {list(decoded.shape)}, not uint8 {[1, *image.shape]}")
    return bits_per_pixel(data, image), psnr(image, decoded[0]), decoded[0], coded - start, done - coded


def latentlink_curve(effort: int, compared: bool = False) -> str:
    """The curve a latentlink model's point belongs to: one per sender-side search effort (and one per effort
    for compared, unshipped, model folders)."""
    name = LATENTLINK if effort == 0 else f"{LATENTLINK} --effort {effort}"
    return f"{name} (compared)" if compared else name


def measure_model(model: str, images: list[np.ndarray], effort: int = 0, compared: bool = False) -> Point:
    """The point of one latentlink model (a shipped name or a folder) at one effort; a first, untimed run
    builds its networks."""
    run_latentlink(model, images[0][:64, :64], effort)
    runs = (run_latentlink(model, image, effort) for image in images)
    bpp, quality, _, encode_s, decode_s = zip(*runs, strict=True)
    per_image = {"bpp": bpp, "psnr": quality, "encode_s": encode_s, "decode_s": decode_s}
    means = {key: float(np.mean(values)) for key, values in per_image.items()}
    if effort:  # the same decoder as effort 0, timed right after TensorFlow's search, whose idle threads still spin
        means["decode_s"] = None
    curve = latentlink_curve(effort, compared)
    point = Point(curve, str(model), **means, per_image={key: list(values) for key, values in per_image.items()})
    log(
        f"  {curve} {model}: {point.bpp:.3f} bpp, {point.psnr:.2f} dB, "
        f"enc {seconds(point.encode_s)} s, dec {seconds(point.decode_s)} s"
    )
    return point


def reference_points() -> list[Point]:
    """The published CompressAI points (not measured here)."""
    return [
        Point(name, f"q{index}", bpp, quality, reference=True)
        for name, (rates, qualities) in REFERENCES.items()
        for index, (bpp, quality) in enumerate(zip(rates, qualities, strict=True), start=1)
    ]


def curves_of(points: list[Point]) -> dict[str, list[Point]]:
    """Points grouped into curves by codec, each sorted by rate."""
    curves: dict[str, list[Point]] = {}
    for point in points:
        curves.setdefault(point.codec, []).append(point)
    return {name: sorted(members, key=lambda p: p.bpp) for name, members in curves.items()}


def monotone(curve: list[Point]) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, PSNR) of the points that raise PSNR over every cheaper point: the interpolation needs PSNR increasing."""
    kept: list[Point] = []
    for point in curve:
        if not kept or point.psnr > kept[-1].psnr:
            kept.append(point)
    return np.array([p.bpp for p in kept]), np.array([p.psnr for p in kept])


def bd_rate_percent(anchor: list[Point], test: list[Point]) -> float | None:
    """BD-rate of test against anchor in percent (pchip, over the overlapping PSNR range); None without overlap."""
    rate_a, psnr_a = monotone(anchor)
    rate_t, psnr_t = monotone(test)
    if len(rate_a) < 2 or len(rate_t) < 2 or max(psnr_a.min(), psnr_t.min()) >= min(psnr_a.max(), psnr_t.max()):
        return None
    return float(bd_rate(rate_a, psnr_a, rate_t, psnr_t, method="pchip", require_matching_points=False, min_overlap=0))


def bd_rates(curves: dict[str, list[Point]]) -> dict[str, dict[str, float | None]]:
    """Curve -> anchor -> BD-rate, for every curve against each anchor that was measured."""
    anchors = [name for name in ANCHORS if name in curves]
    return {
        name: {anchor: bd_rate_percent(curves[anchor], curve) for anchor in anchors} for name, curve in curves.items()
    }


def seconds(value: float | None) -> str:
    """A time for the tables, or - when not measured."""
    return "-" if value is None else f"{value:.3f}"


def print_tables(points: list[Point], rates: dict[str, dict[str, float | None]], n_images: int) -> None:
    """The rate-distortion table and the BD-rate table, as markdown."""
    print(f"Kodak, {n_images} images: means over the images of bpp and of RGB PSNR (reference rows: published)\n")
    print("| codec | setting | bpp | PSNR (dB) | encode (s/image) | decode (s/image) |")
    print("|---|---|---|---|---|---|")
    for point in points:
        codec = f"{point.codec} (reference)" if point.reference else point.codec
        print(
            f"| {codec} | {point.setting} | {point.bpp:.4f} | {point.psnr:.2f} "
            f"| {seconds(point.encode_s)} | {seconds(point.decode_s)} |"
        )
    anchors = next(iter(rates.values()), {}).keys()
    print("\nBD-rate (pchip, overlapping PSNR range; negative: fewer bits for the same PSNR)\n")
    if n_images != KODAK_IMAGES:
        print(f"Reference rows are means over all {KODAK_IMAGES} images, not comparable with these {n_images}.\n")
    print("| curve | " + " | ".join(f"vs {anchor}" for anchor in anchors) + " |")
    print("|---|" + "---|" * len(anchors))
    for name, row in rates.items():
        cells = ["n/a" if value is None else f"{value:+.1f}%" for value in row.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")


def plot_rd(curves: dict[str, list[Point]], path: Path, n_images: int) -> None:
    """bpp against PSNR, one line per codec, reference rows dashed."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, curve in curves.items():
        reference, ours = curve[0].reference, name.startswith(LATENTLINK)
        ax.plot(
            [p.bpp for p in curve],
            [p.psnr for p in curve],
            "--" if reference else "-",
            marker="." if reference else "o",
            linewidth=2.5 if ours else 1.5,
            label=f"{name} (published)" if reference else name,
        )
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR (RGB), dB")
    ax.set_title(f"Kodak, {n_images} images (means over the images)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def crop_of(image: np.ndarray) -> np.ndarray:
    """The figure's crop of an image."""
    return image[CROP_TOP : CROP_TOP + CROP_SIZE, CROP_LEFT : CROP_LEFT + CROP_SIZE]


def crop_panels(image: np.ndarray, codecs: list[Codec], models: list[str]) -> list[tuple[str, np.ndarray]]:
    """(label, crop) of the original and of each codec at the setting nearest the chosen bit rate.

    The chosen latentlink model is the one nearest 0.4 bpp on this image; without one, the target is 0.4 bpp.
    """
    panels = [("original", crop_of(image))]
    candidates = []
    for model in models:
        try:
            bpp, quality, decoded, _, _ = run_latentlink(model, image)
        except Exception as exc:
            log(f"note: {model} left out of the crop figure ({type(exc).__name__}: {exc})")
            continue
        candidates.append((abs(bpp - CROP_DEFAULT_BPP), f"latentlink {model}", bpp, quality, decoded))
    target = CROP_DEFAULT_BPP
    if candidates:
        _, label, target, quality, decoded = min(candidates, key=lambda c: c[0])
        panels.append((f"{label}\n{target:.3f} bpp, {quality:.2f} dB", crop_of(decoded)))
    for codec in codecs:
        coded = {setting: code_image(codec, image, setting) for setting in codec.settings}
        setting = min(coded, key=lambda s: abs(coded[s][0] - target))
        bpp, quality, decoded = coded[setting]
        panels.append((f"{codec.name} q{setting}\n{bpp:.3f} bpp, {quality:.2f} dB", crop_of(decoded)))
    return panels


def save_crop_figure(panels: list[tuple[str, np.ndarray]], path: Path) -> None:
    """The crops side by side at twice their size, each labelled."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.6), squeeze=False, layout="constrained")
    for ax, (label, crop) in zip(axes[0], panels, strict=True):
        ax.imshow(crop, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(
        f"{CROP_IMAGE}, {CROP_SIZE}x{CROP_SIZE} crop at ({CROP_LEFT}, {CROP_TOP}); bpp and PSNR of the whole image",
        fontsize=9,
    )
    fig.savefig(path, dpi=128)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodak", type=Path, default=REPO.parent / "shared" / "data" / "kodak", help="kodim*.png")
    parser.add_argument("--limit", type=int, help="use only the first N images")
    parser.add_argument(
        "--models", nargs="*", help="latentlink models (default: every shipped photo-* model; none: --models alone)"
    )
    parser.add_argument(
        "--efforts",
        type=int,
        nargs="+",
        default=[0],
        help="sender-side search efforts to measure each latentlink model at (each its own curve; 1 and 2 take "
        "seconds per image)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        nargs="*",
        default=[],
        help="photo model folders (not shipped; e.g. an earlier ladder) measured at --compare-efforts, as their own "
        "curves",
    )
    parser.add_argument("--compare-efforts", type=int, nargs="+", default=[0], help="efforts for --compare")
    parser.add_argument("--plot", type=Path, help="save the rate-distortion plot here (none without it)")
    parser.add_argument("--json", type=Path, help="write every number, per image too, here")
    parser.add_argument("--crop-figure", type=Path, help=f"save crops of {CROP_IMAGE} at a similar bit rate here")
    args = parser.parse_args()

    paths = sorted(args.kodak.glob("kodim*.png"))[: args.limit]
    if not paths:
        parser.error(f"no kodim*.png in {args.kodak}")
    images = [read_rgb(path) for path in paths]
    models = photo_models() if args.models is None else args.models
    log(f"{len(images)} Kodak images; latentlink models: {', '.join(models) or 'none'}")

    codecs = [codec for codec in standard_codecs() if available(codec)]
    points = [point for codec in codecs for point in measure_codec(codec, images)]
    measured = []
    for effort in args.efforts:
        for model in models:
            try:
                points.append(measure_model(model, images, effort))
            except Exception as exc:
                log(f"note: latentlink model {model} at effort {effort} skipped ({type(exc).__name__}: {exc})")
                continue
            if model not in measured:
                measured.append(model)
    points += [
        measure_model(folder, images, effort, compared=True)
        for effort in args.compare_efforts
        for folder in args.compare
    ]
    points += reference_points()

    curves = curves_of(points)
    rates = bd_rates(curves)
    print_tables(points, rates, len(images))
    if args.plot:
        plot_rd(curves, args.plot, len(images))
        log(f"plot: {args.plot}")
    if args.crop_figure:
        save_crop_figure(crop_panels(read_rgb(args.kodak / CROP_IMAGE), codecs, measured), args.crop_figure)
        log(f"crop figure: {args.crop_figure}")
    if args.json:
        record = {
            "kodak": str(args.kodak),
            "images": [path.name for path in paths],
            "points": [asdict(point) for point in points],
            "bd_rate_percent": rates,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        log(f"json: {args.json}")


if __name__ == "__main__":
    main()
