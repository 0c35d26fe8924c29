"""The input options shared by the raster commands (remote paths, STAC items)."""

from __future__ import annotations

from typing import Any

#: Appended to the help of every raster input argument.
REMOTE_HELP = (
    '; local files, URLs (https://, s3://, gs://, az://), GDAL paths (/vsizip/, '
    '/vsicurl/, .vrt) or a STAC item .json'
)


def add_assets_argument(parser: Any) -> None:
    """Add ``--assets`` (the assets of a STAC item input) to a command.

    Args:
        parser: The subcommand's parser.
    """
    parser.add_argument(
        '--assets',
        nargs='+',
        metavar='NAME',
        help='with a STAC item input: asset keys or eo:bands common names, in '
        'band order, e.g. red green blue nir (default: every GeoTIFF asset); '
        'assets on another grid are warped to the first',
    )
