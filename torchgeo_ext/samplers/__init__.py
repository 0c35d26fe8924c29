"""Samplers: georeferenced patch samplers and tracking pair samplers."""
