"""Fixtures for the card tier."""

from __future__ import annotations
