"""The rating rules of SPEC §5-6, with no I/O: the readable statement of the rules.

The Lua scripts in `rater.store.lua` state the same rules for Redis; the
differential tests in `tests/` hold the two together.
"""
