"""Shared pytest configuration."""

import os

import matplotlib
import torch

# Plots in tests render off-screen.
matplotlib.use('Agg')

# Under pytest-xdist every worker is its own process: more torch threads than
# cores per worker oversubscribes the CPU and makes small ops far slower.
if 'PYTEST_XDIST_WORKER' in os.environ:
    torch.set_num_threads(1)
