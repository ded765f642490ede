"""The package version (read by pyproject.toml, recorded in every run's manifest)."""

__version__ = "0.1.0"
