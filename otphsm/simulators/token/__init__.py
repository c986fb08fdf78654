"""The emulated token devices: the mobile app and key fobs."""
