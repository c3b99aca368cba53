"""The processing steps behind each agent, free of Faust: records in, records out.

Each step takes consumed `SourceRecord`s and returns the `Emit`s to produce plus
a `Tally` of what to count in metrics once the batch is acknowledged.
"""
