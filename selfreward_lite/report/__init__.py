"""Presentation: what the run measured, in the terminal and as Markdown with plots."""
