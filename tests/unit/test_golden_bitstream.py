"""A committed bitstream decodes, with the shipped default decoder, to the committed images."""

from __future__ import annotations

import numpy as np

from latentlink.shared.entropy_coding import EntropyTables
from latentlink.shared.image_io import read_image
from latentlink.shared.metrics import to_uint8
from latentlink.shared.model_dir import default_model_dir, load_model_dir
from latentlink.shared.network_runtime import CompiledNetwork
from latentlink.shared.proto import latentlink_pb2 as pb
from latentlink.shared.serde import latents_from_batch
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden"


def test_golden_bitstream_decodes_to_the_golden_images():
    model = load_model_dir(default_model_dir())
    batch = pb.LatentBatch.FromString((GOLDEN / "batch.pb").read_bytes())
    assert batch.decoder_digest == model.decoder.digest, "default model changed: run scripts/make_golden.py"
    decoded = latents_from_batch(batch, model.latent_dim, EntropyTables.from_network(model.decoder.network))
    assert decoded.names == [f"test_{i:05d}.png" for i in range(8)]
    images = to_uint8(CompiledNetwork(model.decoder, "cpu")(decoded.latents.astype(np.float32)))
    golden = read_image(GOLDEN / "reconstructions.png", (28, 28 * 8))
    np.testing.assert_array_equal(np.concatenate(list(images), axis=1), golden)
