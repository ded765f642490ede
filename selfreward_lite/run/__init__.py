"""The run directory: paths, creation, lock, pre-flight checks, status, atomic files, journals, seeds."""
