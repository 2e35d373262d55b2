"""Strategies that drive the farm: the blind round-trip strategy and its pieces."""
