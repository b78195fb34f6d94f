"""Writes tests/golden/: one entropy-coded LatentBatch of 8 sample digits and its reconstructions.

Rerun after retraining the default model; tests/unit/test_golden_bitstream.py pins the receiver's
decode of this exact bitstream to the committed images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from latentlink.sender.encode import BatchEncoder
from latentlink.shared.image_io import read_image
from latentlink.shared.model_dir import default_model_dir, load_model_dir
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.serde import latents_to_batch

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"


def main() -> None:
    model = load_model_dir(default_model_dir())
    encoder = BatchEncoder(model, "cpu")
    names = [f"test_{i:05d}.png" for i in range(8)]
    pixels = np.stack([read_image(REPO / "samples" / "mnist" / n, (28, 28)) for n in names])
    latents = encoder.encode(pixels)
    batch = latents_to_batch(model.decoder.digest, pb.LATENT_ENCODING_ANS, 0, names, (28, 28), latents, encoder.tables)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    (GOLDEN / "batch.pb").write_bytes(batch.SerializeToString(deterministic=True))
    strip = np.concatenate(list(encoder.reconstruct(latents)), axis=1)
    Image.fromarray(strip, mode="L").save(GOLDEN / "reconstructions.png")
    print(f"wrote {GOLDEN}: {len(batch.payload)}-byte bitstream for {len(names)} images")


if __name__ == "__main__":
    main()
