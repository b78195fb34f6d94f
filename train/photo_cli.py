"""The photo branch of latentlink-train: a folder of images in, a portable photo model folder out."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

__all__ = ["fit_context_command", "train_photo_command"]


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
        steps=args.steps or PhotoConfig.steps,
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


def fit_context_command(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """Fits a checkerboard context to the model --init names and writes it with the context; returns the exit
    code."""
    from latentlink.shared.model_dir import load_model_dir, update_card
    from latentlink.shared.model_format import ModelFormatError
    from latentlink.train.photo_context import (
        ContextConfig,
        context_card,
        context_maps,
        fit_context,
        integer_context,
        write_context_model,
    )
    from latentlink.train.photo_export import evaluate_photo_model
    from latentlink.train.photo_training import ImageFolderError, PhotoConfig, load_image_folder, split_images

    config = ContextConfig(
        steps=args.steps or ContextConfig.steps, learning_rate=args.learning_rate or ContextConfig.learning_rate
    )
    try:
        if args.init is None:
            raise ValueError("--fit-context needs --init: the photo model folder (or shipped name) to fit it to")
        files = load_model_dir(args.init)
        prior = files.decoder.network.hyperprior
        if not files.decoder.network.HasField("hyperprior") or not prior.means:
            raise ValueError(f"--init {args.init} is not a mean-scale photo model (no means to refine)")
        images, skipped = load_image_folder(args.images, 16 * config.crop, files.encoder.input_shape[-1])
    except (ValueError, OSError, ModelFormatError, ImageFolderError) as exc:
        print(f"latentlink-train: error: {exc}", file=sys.stderr)
        return 2
    for line in skipped:
        print(f"latentlink-train: skipped {line}", file=sys.stderr)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    training, validation = split_images(images, PhotoConfig(val_fraction=args.val_fraction, seed=args.seed))
    maps, validation_maps = context_maps(files, training), context_maps(files, validation, 1)
    model, history = fit_context(
        config, maps, validation_maps, progress=not args.quiet and sys.stderr.isatty(), log=log
    )
    argv_text = shlex.join(sys.argv[1:] if argv is None else list(argv))
    card = context_card(config, history, f"latentlink-train {argv_text}")
    name = args.name or args.out.name
    out = write_context_model(files, integer_context(model), card, args.out, name)
    if validation:
        card["validation_before"] = evaluate_photo_model(files, validation)
        out = update_card(args.out, {"context": card, "validation": evaluate_photo_model(out, validation)})
    print(
        f"{name}: {out.card.get('validation', history)}; "
        f"decoder {out.decoder.size_bytes / 1024:.0f} KiB; wrote {args.out}"
    )
    return 0
