"""Samplers: georeferenced patch samplers and tracking pair samplers."""

from .tracking import TrackingPairDataset, TrackingPairSampler

__all__ = ('TrackingPairDataset', 'TrackingPairSampler', 'ValidAreaGeoSampler')
from .geo import ValidAreaGeoSampler
