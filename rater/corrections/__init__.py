"""Corrections (SPEC §13): re-rating a period with a corrected plan, and the adjustment
records that carry the difference to billing. `rerate` is the pure re-rating; `run`
reads the call history, emits the adjustments and moves the counters."""
