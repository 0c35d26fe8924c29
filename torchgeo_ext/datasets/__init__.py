"""Datasets of the benchmarks used by the papers this library implements."""
