"""Georeferenced outputs: raster and vector writers, tiled prediction, the prediction writer."""
