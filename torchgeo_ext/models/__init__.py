"""Paper models, one module each, and their shared building blocks."""
from .dianet import DIANet, dianet_w8, dianet_w18, dianet_w48
from .superyolo import SuperYOLO, superyolo_early, superyolo_ir, superyolo_mf, superyolo_rgb
