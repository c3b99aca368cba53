"""The rater's benchmarks (`make bench`, `python -m benchmarks`): see README.md here."""
