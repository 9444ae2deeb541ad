"""bench: a Hydra-configured PyTorch training benchmark."""
