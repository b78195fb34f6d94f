"""Prints the markdown table of the shipped models from their model.json cards."""

from __future__ import annotations

from pathlib import Path

from latentlink.shared.model_dir import load_model_dir

REPO = Path(__file__).resolve().parent.parent
ORDER = ["q1", "q2", "q3", "q4", "q5", "conv-k64", "seed-k64"]
PHOTOS = ["photo-q1", "photo-q2", "photo-q3"]


def main() -> None:
    print(
        "| folder | family | latent | test MSE | RMSE | PSNR | table bits/image "
        "| encoder + decoder on disk | decoder | decoder multiply-adds/image | train time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ORDER:
        folder = REPO / "models" / name
        model = load_model_dir(folder)
        card, test = model.card, model.card["test"]
        bits = f"{test['table_bits_per_image']:.1f}" if "table_bits_per_image" in test else "-"
        beta = f", β={card['config']['beta']:g}" if card["family"] == "rd" else ""
        if card["config"].get("prior") == "context":
            beta += ", context prior"
        print(
            f"| `{name}` | {card['family']}{beta} | {model.latent_dim} | {test['mse']:.5f} | {test['rmse']:.4f} | "
            f"{test['psnr_db']:.2f} dB | {bits} | {model.encoder.size_bytes + model.decoder.size_bytes:,} B | "
            f"{model.decoder.size_bytes:,} B | {model.decoder.macs / 1e6:.2f} M | {card['train_seconds']:.0f} s |"
        )
    print()
    print(
        "| folder | λ | latent | validation bpp | validation PSNR (RGB) | encoder + decoder on disk | decoder "
        "| steps | train time |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in PHOTOS:
        model = load_model_dir(REPO / "models" / name)
        card, validation = model.card, model.card["validation"]
        print(
            f"| `{name}` | {card['config']['lmbda']:g} | {model.latent_dim} ch | {validation['bpp']:.3f} | "
            f"{validation['psnr_db']:.2f} dB | {model.encoder.size_bytes + model.decoder.size_bytes:,} B | "
            f"{model.decoder.size_bytes:,} B | {card['config']['steps']} | {card['training']['train_seconds']:.0f} s |"
        )
    print()
    for name in ORDER + PHOTOS:
        print(load_model_dir(REPO / "models" / name).card["train_command"])


if __name__ == "__main__":
    main()
