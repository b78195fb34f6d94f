"""latentlink code common to sender and receiver."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) drowns our
# one-line messages; users can still raise it by setting the variable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# gRPC's C core logs each failed TLS handshake at info level; our errors already say why.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
