"""Loading and running models: backend choice, HF and Unsloth loaders, the adapter stack, generation."""
