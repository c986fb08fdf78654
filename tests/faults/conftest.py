"""Fixtures for this tier alone: the crash tests' deployment (`support.crash_rig`)."""

from support.crash_rig import rig, seed_storage

__all__ = ["rig", "seed_storage"]
