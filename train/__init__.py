"""Training: the autoencoder families, rate-distortion training and the latentlink-train command."""
