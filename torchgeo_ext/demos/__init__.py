"""Demos: the anomaly demo, the detection demo and their synthetic scenes."""
