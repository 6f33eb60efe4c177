"""Beam building blocks: each a thin DoFn/PTransform over plain, unit-testable functions."""
