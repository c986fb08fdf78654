"""Fixtures for the hsm tier."""

from __future__ import annotations
