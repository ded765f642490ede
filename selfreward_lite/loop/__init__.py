"""The self-rewarding loop: the pipeline and its stages, self-instruction, pairs, training."""
