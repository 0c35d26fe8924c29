"""Samplers: georeferenced patch samplers and tracking pair samplers."""

from .geo import ValidAreaGeoSampler
from .tracking import TrackingPairDataset, TrackingPairSampler

__all__ = ('TrackingPairDataset', 'TrackingPairSampler', 'ValidAreaGeoSampler')
