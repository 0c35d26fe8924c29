"""Shared pytest configuration."""

import matplotlib
import torch

# Plots in tests render off-screen.
matplotlib.use('Agg')

# The models under test are small: intra-op threads only add overhead, and
# under pytest-xdist (one process per core) or on a shared CPU they oversubscribe
# the cores and make small ops many times slower.
torch.set_num_threads(1)
