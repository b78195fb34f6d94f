"""latentlink: compress images to a file, decompress a file to PNGs, inspect a file, list the shipped models."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from latentlink.shared.cli_help import HelpFormatter, add_version, command_runtime, interrupted, quiet_process
from latentlink.shared.model_dir import DEFAULT_PHOTO_QUALITY, DEFAULT_QUALITY, PHOTO_QUALITIES, QUALITIES

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    from latentlink.sender.cli import add_effort_argument

    parser = argparse.ArgumentParser(
        prog="latentlink",
        description="Compress and decompress images with latentlink's learned codec, without a network.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  latentlink compress digits/ -o digits.llnk          # a folder, images or .npy/.npz arrays\n"
        "  latentlink decompress digits.llnk -o restored/      # PNGs, as a receiver would write them\n"
        "  latentlink info digits.llnk\n"
        "  latentlink models\n"
        "streaming to another machine: the sender and receiver commands.",
    )
    add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compress = commands.add_parser(
        "compress",
        help="compress images into one file",
        formatter_class=HelpFormatter,
        description="Compress "
        "images (folders searched recursively, image files, .npy/.npz arrays of uint8 images) into one file.",
    )
    compress.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="folder, image or .npy/.npz array")
    compress.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="the file to write")
    compress.add_argument(
        "--quality",
        type=int,
        choices=QUALITIES,
        default=None,
        help=f"shipped ladder model: digits 1..{QUALITIES[-1]} (default {DEFAULT_QUALITY}), photos "
        f"1..{PHOTO_QUALITIES[-1]} (default {DEFAULT_PHOTO_QUALITY}); the inputs pick the ladder",
    )
    compress.add_argument("--model", type=Path, default=None, help="model folder (instead of --quality)")
    compress.add_argument(
        "--resize", action="store_true", help="scale images of another size to fit, keeping the aspect ratio"
    )
    compress.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="where the encoder runs")
    add_effort_argument(compress)

    decompress = commands.add_parser(
        "decompress",
        help="decompress a file into PNG images",
        formatter_class=HelpFormatter,
        description="Decode a latentlink file into one PNG per image, under the images' original names.",
    )
    decompress.add_argument("file", type=Path, metavar="FILE", help="a file made by `latentlink compress`")
    decompress.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="folder for the PNGs")
    decompress.add_argument(
        "--model", type=Path, default=None, help="model folder or decoder .lln, for a model that is not shipped"
    )
    decompress.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto", help="where the decoder runs")

    info = commands.add_parser("info", help="describe a file without decoding it", formatter_class=HelpFormatter)
    info.add_argument("file", type=Path, metavar="FILE")

    commands.add_parser("models", help="list the shipped models and what they measure", formatter_class=HelpFormatter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_process()
    command_runtime()
    args = build_parser().parse_args(argv)
    from latentlink.codec.container import ContainerError
    from latentlink.shared.image_io import ImageError
    from latentlink.shared.model_format import ModelFormatError

    try:
        return {"compress": _compress, "decompress": _decompress, "info": _info, "models": _models}[args.command](args)
    except KeyboardInterrupt:  # what it writes goes to its place whole or not at all (write_files_durably)
        return interrupted("latentlink")
    except BrokenPipeError:  # `latentlink models | head`: the reader left, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (ContainerError, ImageError, ModelFormatError, FileNotFoundError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_FAILED)


def _compress(args: argparse.Namespace) -> int:
    from latentlink.codec.library import compress, decompress
    from latentlink.sender.cli import out_of_domain_warning
    from latentlink.sender.encode import QualityMeter, out_of_domain_psnr
    from latentlink.sender.parallel import name_clashes
    from latentlink.sender.read_ahead import load_batch
    from latentlink.shared.failures import format_failures
    from latentlink.shared.image_io import FitResize, summarize_skipped
    from latentlink.shared.model_choice import choose_model

    if args.model and args.quality:
        return _fail("give --model or --quality, not both", EXIT_USAGE)
    resizer, skipped = FitResize() if args.resize else None, {}
    model, sources, chosen = choose_model(args.inputs, args.model, args.quality, resizer, skipped)

    failed = name_clashes(sources)
    loaded = load_batch([s for s in sources if s.name not in failed])
    failed.update(loaded.failed)
    if not loaded.names:
        print("\n".join(format_failures(failed)), file=sys.stderr)
        return _fail(f"none of the {len(sources)} images could be read; nothing written", EXIT_FAILED)
    data = compress(loaded.pixels, model=model, names=loaded.names, device=args.device, effort=args.effort)
    _write_files([(args.output, data)])
    count = len(loaded.names)
    quality = QualityMeter(exact_images=count)
    quality.add(loaded.names, loaded.pixels, decompress(data, model, device=args.device))
    print(
        f"{count} images -> {args.output}: {len(data):,} bytes, {len(data) / count:.1f} B per image "
        f"(input files: {sum(loaded.input_bytes) / count:.0f} B per image), model {model.name}\n"
        f"  quality of the reconstructions: {quality.result()}"
    )
    if chosen:
        print(f"  {chosen}")
    if skipped:
        print(f"  skipped {len(skipped)} files: {summarize_skipped(skipped)}")
    if resizer and resizer.count:
        height, width = model.image_shape
        print(
            f"  --resize: {resizer.count} images scaled to fit {width}x{height}, aspect ratio kept, padded with black"
        )
    if failed:
        print(
            "\n".join([f"latentlink: {len(failed)} images not compressed:", *format_failures(failed)]), file=sys.stderr
        )
    found = quality.below(out_of_domain_psnr(model))
    if warning := out_of_domain_warning(found, model, "latentlink", "A model trained on such images would do better"):
        print(warning, file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _decompress(args: argparse.Namespace) -> int:
    from latentlink.codec.library import decompress_named
    from latentlink.receiver.output import UnsafeNameError, output_path
    from latentlink.shared.image_io import encode_pngs

    names, images = decompress_named(_read(args.file), args.model, device=args.device)
    args.output.mkdir(parents=True, exist_ok=True)
    files, failed = [], 0
    for name, png in zip(names, encode_pngs(images), strict=True):  # digits: a stack, encoded at once
        try:
            files.append((output_path(args.output, name), png))
        except UnsafeNameError as exc:
            print(f"latentlink: skipped: {exc}", file=sys.stderr)
            failed += 1
    _write_files(files)
    print(f"{len(names) - failed} images written to {args.output}")
    return EXIT_FAILED if failed else EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from latentlink.codec.container import unpack_container
    from latentlink.shared.model_format import is_any_size

    data = _read(args.file)
    container = unpack_container(data)
    count = max(container.image_count, 1)
    if is_any_size(container.image_shape):
        kind = "of any size (grey or colour)"
    else:
        kind = "of {1}x{0} (greyscale)".format(*container.image_shape)
    print(f"{args.file}: latentlink container, {container.image_count} images {kind}")
    print(f"  model {container.model_name or '?'}, decoder {container.decoder_digest}")
    print(f"  latents: {container.encoding_name}, {len(data):,} bytes in all, {len(data) / count:.1f} B per image")
    return EXIT_OK


def _models(args: argparse.Namespace) -> int:
    from latentlink.shared.model_dir import load_model_dir, shipped_model_dirs

    header = ("model", "use with", "family", "latent", "test MSE", "PSNR", "size", "decoder")
    rows = []
    for folder in shipped_model_dirs():
        model = load_model_dir(folder)
        card = model.card
        if model.encoder.any_size:  # photos: measured on held-out training photos, in bits per pixel
            test = card.get("validation", {})
            mse = 10 ** (-test["psnr_db"] / 10) if "psnr_db" in test else float("nan")
            size = f"{test['bpp']:.3f} bpp" if "bpp" in test else "?"
            latent = f"{model.latent_dim} ch"
            ladder, default = {f"photo-q{q}": q for q in PHOTO_QUALITIES}, DEFAULT_PHOTO_QUALITY
        else:
            test = card.get("test", {})
            mse, bits = test.get("mse", float("nan")), test.get("table_bits_per_image")
            size = f"{bits / 8:.1f} B/image" if bits else f"{4 * model.latent_dim} B/image"  # coded, else float32
            latent = str(model.latent_dim)
            ladder, default = {f"q{q}": q for q in QUALITIES}, DEFAULT_QUALITY
        quality = ladder.get(folder.name)
        use = (
            f"--quality {quality}" + (" (default)" if quality == default else "")
            if quality
            else f"--model {folder.name}"
        )
        rows.append(
            (
                model.name,
                use,
                card.get("family", "?"),
                latent,
                f"{mse:.5f}",
                f"{test.get('psnr_db', float('nan')):.2f} dB",
                size,
                f"{model.decoder.size_bytes:,} B",
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print("test MSE and PSNR: the 10,000 MNIST test digits as a receiver writes them; B/image: latents only")
    print("photo models: RGB PSNR and bitstream bits per pixel on the photos held out of their training")
    return EXIT_OK


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f'no such file: "{path}"')
    return path.read_bytes()


def _write_files(files: list[tuple[Path, bytes]]) -> None:
    """Writes whole files, durably, as a receiver does; raises OSError for the first that fails."""
    from latentlink.receiver.output import write_files_durably

    for index, reason in sorted(write_files_durably(files).items())[:1]:
        raise OSError(f"{files[index][0]}: {reason}")


def _fail(message: str, code: int) -> int:
    print(f"latentlink: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
