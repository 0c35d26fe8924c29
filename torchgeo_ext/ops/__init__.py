"""Tensor operations shared by models, trainers and export: box geometry and NMS."""
