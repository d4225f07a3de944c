"""One training loop (a single process is the world-size-1 case of torchrun's), runs, checkpoints, trained
models."""
