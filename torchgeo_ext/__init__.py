"""torchgeo-ext: remote-sensing paper models, benchmark datasets and georeferenced export for TorchGeo."""

__version__ = '0.1.0'
