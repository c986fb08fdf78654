"""Fixtures for the pcsc tier."""

from __future__ import annotations
