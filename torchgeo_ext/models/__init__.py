"""Paper models, one module each, and their shared building blocks."""
