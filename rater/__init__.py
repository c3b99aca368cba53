"""rater: a real-time usage rater for telephony billing (see SPEC.md and README.md)."""

__version__ = "0.1.0"
