"""Transfer: strategies as policy objects over one training loop, batching, checkpoints."""
