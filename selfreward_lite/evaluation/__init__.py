"""Does it work: judge quality, win rate, statistics, and the evaluation runner on top."""
