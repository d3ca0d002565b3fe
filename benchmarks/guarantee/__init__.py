"""Guarantee-mode benchmark: pac vs marginal, device vs pooled vs auto, and the feedback loop."""
