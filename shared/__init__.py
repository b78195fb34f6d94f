"""latentlink code common to sender and receiver."""
