"""Loss functions of the paper models, one module per family (as in TorchGeo)."""
