"""Simulated devices that implement the same ports as the real ones."""
