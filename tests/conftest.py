"""Shared pytest configuration."""

import matplotlib

# Plots in tests render off-screen.
matplotlib.use('Agg')
