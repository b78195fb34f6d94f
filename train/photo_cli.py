"""The photo branch of latentlink-train: a folder of images in, a portable photo model folder out."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

__all__ = ["train_photo_command"]


def train_photo_command(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Trains the photo codec as the parsed arguments say and writes the model folder; returns the exit code."""
    from latentlink.train.photo_training import (
        ImageFolderError,
        InitError,
        PhotoConfig,
        load_image_folder,
        split_images,
        train_photo,
    )

    config = PhotoConfig(
        channels=args.width,
        latent=args.latent_channels,
        lmbda=args.lmbda,
        steps=args.steps,
        batch_size=args.photo_batch,
        crop=args.crop,
        learning_rate=args.learning_rate or PhotoConfig.learning_rate,
        val_fraction=args.val_fraction,
        seed=args.seed,
        means=not args.scale_only,
    )
    try:
        images, skipped = load_image_folder(args.images, config.crop, 1 if args.grey else 3)
    except ImageFolderError as exc:
        print(f"latentlink-train: error: {exc}", file=sys.stderr)
        return 2
    for line in skipped:
        print(f"latentlink-train: skipped {line}", file=sys.stderr)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    bar = not args.quiet and sys.stderr.isatty()
    training, validation = split_images(images, config)
    try:
        model, history = train_photo(config, training, validation, args.checkpoint, args.init, progress=bar, log=log)
    except InitError as exc:
        print(f"latentlink-train: error: {exc}", file=sys.stderr)
        return 2
    from latentlink.shared.model_dir import update_card
    from latentlink.train.photo_export import evaluate_photo_model, write_photo_model

    argv_text = shlex.join(sys.argv[1:] if argv is None else list(argv))
    name = args.name or args.out.name
    files = write_photo_model(model, config, history, args.out, name, f"latentlink-train {argv_text}")
    if validation:
        files = update_card(args.out, {"validation": evaluate_photo_model(files, validation)})
    print(
        f"{name}: {files.card.get('validation', history)}; "
        f"decoder {files.decoder.size_bytes / 1024:.0f} KiB; wrote {args.out}"
    )
    return 0
