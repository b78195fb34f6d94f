"""latentlink-train: trains an autoencoder on MNIST or on a folder of images and writes a portable model folder."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from latentlink.shared.cli_help import HelpFormatter, add_version, interrupted, quiet_process
from latentlink.train.photo_training import PhotoConfig

__all__ = ["TrainConfig", "build_parser", "main", "train_autoencoder", "evaluate"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run."""

    family: str = "conv"
    latent_dim: int = 64
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 2e-3
    optimizer: str = "adam"
    loss: str = "mse"
    seed: int = 0
    train_limit: int = 0
    beta: float = 1e-4  # rd family: weight of bits per image against MSE
    channels: int = 20  # rd family: decoder width
    encoder_channels: int = 32  # rd family: encoder width (first layer; the second has twice as many)
    prior: str = "factorized"  # rd family: "factorized" (per latent) or "context" (each latent given the ones before)
    context_width: int = 80  # context prior: units per hidden layer (80: a q-size decoder stays < 2.5 M MACs)


def train_autoencoder(config: TrainConfig, x_train: np.ndarray, progress: bool = True):
    """Trains a fresh autoencoder on uint8 images; returns it and the per-epoch losses."""
    from tqdm import tqdm

    from latentlink.shared.tf_import import tensorflow

    tf = tensorflow()
    import keras

    from latentlink.train.autoencoder import build_autoencoder

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    if config.train_limit:
        x_train = x_train[: config.train_limit]
    x = x_train.astype(np.float32) / 255.0
    model = build_autoencoder(config.family, config.latent_dim)
    steps = -(-len(x) // config.batch_size) * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps)
    optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}
    losses = {"mse": "mse", "bce": "binary_crossentropy"}
    joined = model.joined()
    joined.compile(optimizers[config.optimizer](schedule), losses[config.loss])
    bar = tqdm(total=config.epochs, unit="epoch", disable=not progress, file=sys.stderr)

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            bar.set_postfix(loss=f"{logs['loss']:.5f}")
            bar.update(1)

    history = joined.fit(x, x, batch_size=config.batch_size, epochs=config.epochs, verbose=0, callbacks=[Progress()])
    bar.close()
    return model, history.history["loss"]


def evaluate(model, x_test: np.ndarray, quantize: bool = False):
    """Returns the 8-bit reconstruction quality and CPU images/s for encode and decode."""
    from latentlink.shared.metrics import quality, to_uint8

    x = x_test.astype(np.float32) / 255.0
    start = time.perf_counter()
    latents = model.encoder.predict(x, batch_size=1000, verbose=0)
    if quantize:
        latents = np.round(latents)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    out = model.decoder.predict(latents, batch_size=1000, verbose=0)
    decode_s = time.perf_counter() - start
    return quality(x_test, to_uint8(out)), len(x) / encode_s, len(x) / decode_s


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="latentlink-train",
        description="Train an autoencoder on MNIST, or a photo codec on a folder of images, "
        "and write a portable model folder.",
        formatter_class=HelpFormatter,
        epilog="examples:\n"
        "  latentlink-train --family rd --latent-dim 32 --beta 3e-5 --epochs 36 --out my-model\n"
        "  latentlink-train --images my-photos/ --lambda 0.0067 --steps 20000 --out my-photo-model\n"
        "  latentlink-train --images my-photos/ --init my-photo-model --fit-context --out my-photo-model-ctx",
    )
    photo = parser.add_argument_group("photo codec (--images)")
    photo.add_argument("--images", type=Path, help="train the photo codec on this folder of images (any sizes)")
    photo.add_argument(
        "--lambda",
        dest="lmbda",
        type=float,
        default=PhotoConfig.lmbda,
        help="weight of 255^2*MSE against bits per pixel (higher: better and bigger)",
    )
    photo.add_argument("--steps", type=int, help=f"training steps (default {PhotoConfig.steps})")
    photo.add_argument("--crop", type=int, default=PhotoConfig.crop, help="random square crop size")
    photo.add_argument("--photo-batch", type=int, default=PhotoConfig.batch_size, help="crops per step")
    photo.add_argument(
        "--val-fraction", type=float, default=PhotoConfig.val_fraction, help="images held out for validation"
    )
    photo.add_argument("--width", type=int, default=PhotoConfig.channels, help="transform channels N")
    photo.add_argument("--latent-channels", type=int, default=PhotoConfig.latent, help="latent channels M")
    photo.add_argument("--grey", action="store_true", help="train on greyscale images (default: colour)")
    photo.add_argument(
        "--scale-only",
        action="store_true",
        help="a scale hyperprior (Balle 2018) instead of the default mean-scale one (Minnen 2018)",
    )
    photo.add_argument(
        "--init",
        type=Path,
        help="start from this checkpoint, or this photo model folder (photo-q2, ...): fine-tuning; a narrower "
        "model (--width, --latent-channels) grows into this one, starting as itself",
    )
    photo.add_argument("--checkpoint", type=Path, help="save the weights here as training goes")
    photo.add_argument(
        "--fit-context",
        action="store_true",
        help="fit a checkerboard context (He 2021) to the mean-scale photo model --init names, on --images: "
        "fewer bits, same transforms (--steps: default 6000)",
    )
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--name", help="model name (default: the output folder's name)")
    parser.add_argument(
        "--family",
        choices=("seed", "conv", "rd"),
        default=defaults.family,
        help="seed: the seed's sigmoid MLP; conv: convolutional; rd: conv trained for rate-distortion",
    )
    parser.add_argument("--beta", type=float, default=defaults.beta, help="rd: bits-per-image weight (higher: smaller)")
    parser.add_argument("--channels", type=int, default=defaults.channels, help="rd: decoder width")
    parser.add_argument("--encoder-channels", type=int, default=defaults.encoder_channels, help="rd: encoder width")
    parser.add_argument(
        "--prior",
        choices=("factorized", "context"),
        default=defaults.prior,
        help="rd: entropy model of the latents: one per latent, or each given the ones before it",
    )
    parser.add_argument(
        "--context-width", type=int, default=defaults.context_width, help="rd, context prior: hidden units per layer"
    )
    parser.add_argument("--latent-dim", type=int, default=defaults.latent_dim, help="latent width k")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--learning-rate",
        type=float,
        help=f"peak rate, cosine decay (default: MNIST {defaults.learning_rate}, photos {PhotoConfig.learning_rate})",
    )
    parser.add_argument("--optimizer", choices=("adam", "rmsprop"), default=defaults.optimizer)
    parser.add_argument("--loss", choices=("mse", "bce"), default=defaults.loss, help="training loss")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument("--train-limit", type=int, default=0, help="train on the first N images only (0: all)")
    parser.add_argument("--data", help="path to mnist.npz (default: $LATENTLINK_MNIST, else Keras' cache)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_version(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_process()
    args = build_parser().parse_args(argv)
    try:
        return _train(args, argv)
    except KeyboardInterrupt:  # nothing is written before training ends: the model folder is saved last
        return interrupted("latentlink-train")


def _train(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    if args.images is not None:
        from latentlink.train.photo_cli import fit_context_command, train_photo_command

        return (fit_context_command if args.fit_context else train_photo_command)(args, argv)
    config = TrainConfig(
        family=args.family,
        latent_dim=args.latent_dim,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate or TrainConfig.learning_rate,
        optimizer=args.optimizer,
        loss=args.loss,
        seed=args.seed,
        train_limit=args.train_limit,
        beta=args.beta,
        channels=args.channels,
        encoder_channels=args.encoder_channels,
        prior=args.prior,
        context_width=args.context_width,
    )
    from latentlink.train.mnist import load_mnist

    try:
        x_train, x_test = load_mnist(args.data)
    except (OSError, KeyError, ValueError) as exc:
        print(f"latentlink-train: error: cannot load MNIST: {exc}", file=sys.stderr)
        return 2

    from latentlink.shared.keras_bridge import network_from_keras
    from latentlink.shared.model_dir import save_model_dir
    from latentlink.shared.proto import model_pb2

    start = time.perf_counter()
    entropy_model, extra = None, {}
    if config.family == "rd":
        from latentlink.shared.entropy_coding import EntropyTables
        from latentlink.train.factorized_prior import integer_pmfs
        from latentlink.train.rd_training import train_rd

        model, prior, losses = train_rd(config, x_train, progress=not args.quiet)
        if config.prior == "context":
            from latentlink.train.context_prior import context_prior_proto

            seen = model.encoder.predict(x_train.astype(np.float32) / 255.0, batch_size=1000, verbose=0)
            entropy_model = context_prior_proto(prior, np.round(seen))
        else:
            entropy_model = EntropyTables(*integer_pmfs(prior), precision=16).to_proto()
    else:
        model, losses = train_autoencoder(config, x_train, progress=not args.quiet)
    train_s = time.perf_counter() - start
    test, enc_rate, dec_rate = evaluate(model, x_test, quantize=entropy_model is not None)
    name = args.name or args.out.name
    decoder = network_from_keras(model.decoder, model_pb2.ROLE_DECODER, name)
    if isinstance(entropy_model, model_pb2.ContextPrior):
        decoder.context_prior.CopyFrom(entropy_model)
    elif entropy_model is not None:
        decoder.entropy_model.CopyFrom(entropy_model)
    if entropy_model is not None:
        from latentlink.shared.serde import coding_tables

        latents = np.round(model.encoder.predict(x_test.astype(np.float32) / 255.0, batch_size=1000, verbose=0))
        extra["test"] = {"table_bits_per_image": float(coding_tables(decoder).bits(latents).mean())}
    argv_text = shlex.join(sys.argv[1:] if argv is None else list(argv))
    card = {
        "family": config.family,
        "config": asdict(config),
        "train_command": f"latentlink-train {argv_text}",
        "train_seconds": round(train_s, 1),
        "final_train_loss": losses[-1],
        "test": {
            "mse": test.mse,
            "rmse": test.rmse,
            "psnr_db": test.psnr,
            "images": len(x_test),
            **extra.get("test", {}),
        },
        "cpu_images_per_s": {"encode": round(enc_rate), "decode": round(dec_rate)},
        "encoder_params": model.encoder.count_params(),
        "decoder_params": model.decoder.count_params(),
    }
    files = save_model_dir(args.out, network_from_keras(model.encoder, model_pb2.ROLE_ENCODER, name), decoder, card)
    print(
        f"{name}: test {test}; trained in {train_s:.0f} s; "
        f"decoder {files.decoder.size_bytes / 1024:.0f} KiB ({files.decoder.digest[:12]}); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
