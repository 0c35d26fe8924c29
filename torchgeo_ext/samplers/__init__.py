"""Samplers: georeferenced patch samplers, tracking pair samplers, sample subsets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .cells import CellGridSampler
    from .geo import ValidAreaGeoSampler
    from .object import ObjectSampler
    from .subset import IndexedDataset, read_index_list, write_index_list
    from .tracking import TrackingPairDataset, TrackingPairSampler

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'CellGridSampler': 'torchgeo_ext.samplers.cells',
    'ObjectSampler': 'torchgeo_ext.samplers.object',
    'IndexedDataset': 'torchgeo_ext.samplers.subset',
    'read_index_list': 'torchgeo_ext.samplers.subset',
    'write_index_list': 'torchgeo_ext.samplers.subset',
    'ValidAreaGeoSampler': 'torchgeo_ext.samplers.geo',
    'TrackingPairDataset': 'torchgeo_ext.samplers.tracking',
    'TrackingPairSampler': 'torchgeo_ext.samplers.tracking',
}

__all__ = tuple(sorted(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
