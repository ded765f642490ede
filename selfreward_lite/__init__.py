"""selfreward_lite: Self-Rewarding Language Models (Yuan et al., 2024) on one machine."""

__version__ = "0.1.0"
