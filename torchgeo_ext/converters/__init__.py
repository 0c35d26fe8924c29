"""Offline converters from raw archives to the stored layout of a dataset."""
