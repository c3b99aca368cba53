"""Faust agents, one module per input topic; each is a thin loop around a `rater.service` step."""
