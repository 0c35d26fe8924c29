"""STAC items and item collections as inputs: assets chosen by key or band name."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

from ..errors import InvalidInputError, MissingInputError
from .sources import AssetPath, gdal_path

__all__ = ['is_stac', 'read_items', 'resolve_inputs', 'select_assets', 'stac_assets']

#: Media types of assets taken when no asset is named.
RASTER_MEDIA_TYPES = ('image/tiff', 'image/jp2', 'application/x-hdf')


def _json_href(path: str | os.PathLike[str]) -> str:
    """The href pystac reads: a URL for /vsicurl/ paths, else the local path."""
    text = gdal_path(path)
    if text.startswith('/vsicurl/'):
        return text[len('/vsicurl/') :]
    return text


def is_stac(path: str | os.PathLike[str]) -> bool:
    """Whether an input names a STAC JSON document (by its ``.json`` extension).

    Args:
        path: An input path or URL.

    Returns:
        True for ``.json`` (and ``.geojson``) names, query strings ignored.
    """
    name = urlsplit(os.fspath(path)).path.lower()
    return name.endswith(('.json', '.geojson'))


def read_items(path: str | os.PathLike[str]) -> list[Any]:
    """Read a STAC Item or ItemCollection from a file or an http(s) URL.

    Args:
        path: The JSON document.

    Returns:
        The ``pystac.Item`` objects, in document order, each with a self href
        so that relative asset hrefs resolve.

    Raises:
        MissingInputError: If the document cannot be read.
        InvalidInputError: If it is neither a STAC Item nor an ItemCollection.
    """
    import pystac

    href = _json_href(path)
    if urlsplit(href).scheme not in ('http', 'https') and not os.path.isfile(href):
        raise MissingInputError(path, 'no such STAC document')
    try:
        data = pystac.StacIO.default().read_json(href)
    except (OSError, ValueError) as error:
        reason = ' '.join(str(error).split())
        raise MissingInputError(
            path, f'cannot read the STAC document ({reason})'
        ) from None
    kind = data.get('type') if isinstance(data, dict) else None
    try:
        if kind == 'Feature':
            item = pystac.Item.from_dict(data, href=href, preserve_dict=False)
            item.set_self_href(href)
            return [item]
        if kind == 'FeatureCollection':
            items = list(pystac.ItemCollection.from_dict(data, preserve_dict=False))
        else:
            raise InvalidInputError(
                path, f'not a STAC Item or ItemCollection (type {kind!r})'
            )
    except (KeyError, TypeError, pystac.STACError) as error:
        raise InvalidInputError(path, f'not a valid STAC document ({error})') from None
    for item in items:
        if item.get_self_href() is None:  # relative hrefs: next to the collection
            item.set_self_href(_sibling(href, f'{item.id}.json'))
    return items


def _sibling(href: str, name: str) -> str:
    if urlsplit(href).scheme:
        return urljoin(href, name)
    return posixpath.join(posixpath.dirname(os.path.abspath(href)), name)


def _common_names(asset: Any) -> list[str]:
    """The band common names of an asset (``eo:bands``, or STAC 1.1 ``bands``)."""
    names = []
    for band in asset.extra_fields.get('eo:bands', []) or []:
        if isinstance(band, dict) and band.get('common_name'):
            names.append(str(band['common_name']))
    for band in asset.extra_fields.get('bands', []) or []:
        if isinstance(band, dict) and band.get('eo:common_name'):
            names.append(str(band['eo:common_name']))
    return names


def select_assets(item: Any, names: Sequence[str] | None = None) -> list[AssetPath]:
    """Choose assets of an item, by key or by ``eo:bands`` common name.

    Args:
        item: A ``pystac.Item``.
        names: Asset keys or common names, in the wanted band order; None:
            every GeoTIFF/JP2 data asset, in the item's order.

    Returns:
        One GDAL path per asset, with the item id, key and absolute href.

    Raises:
        InvalidInputError: If a name matches no asset, or (names None) the
            item has no raster asset.
    """
    assets = item.get_assets()
    where = item.get_self_href() or item.id
    if names is None:
        keys = [
            key
            for key, asset in assets.items()
            if any(t in (asset.media_type or '') for t in RASTER_MEDIA_TYPES)
            and 'thumbnail' not in (asset.roles or [])
            and 'overview' not in (asset.roles or [])
        ]
        if not keys:
            raise InvalidInputError(
                where, f'item {item.id!r} has no GeoTIFF asset; name them with --assets'
            )
    else:
        keys = []
        for name in names:
            if name in assets:
                keys.append(name)
                continue
            matches = [k for k, a in assets.items() if name in _common_names(a)]
            if not matches:
                common = sorted({n for a in assets.values() for n in _common_names(a)})
                raise InvalidInputError(
                    where,
                    f'item {item.id!r} has no asset {name!r} (keys: '
                    f'{", ".join(assets)}; band names: {", ".join(common) or "none"})',
                )
            keys.append(matches[0])
    return [
        AssetPath(
            assets[key].get_absolute_href() or assets[key].href,
            item_id=item.id,
            key=key,
        )
        for key in keys
    ]


def stac_assets(
    path: str | os.PathLike[str], assets: Sequence[str] | None = None
) -> list[list[AssetPath]]:
    """The chosen assets of every item of a STAC Item or ItemCollection.

    Example::

        rgbn = stac_assets('item.json', ['red', 'green', 'blue', 'nir'])[0]
        detect_with_checkpoint(rgbn, 'cars.gpkg', 'superyolo.ckpt')

    Args:
        path: The STAC JSON file or URL.
        assets: Asset keys or common names (see :func:`select_assets`).

    Returns:
        One list of inputs per item.
    """
    return [select_assets(item, assets) for item in read_items(path)]


def resolve_inputs(
    inputs: Sequence[str | os.PathLike[str]], assets: Sequence[str] | None = None
) -> list[str | os.PathLike[str]]:
    """The raster inputs of one job: paths as given, or one STAC item's assets.

    Args:
        inputs: Raster paths/URLs, or a single STAC Item JSON (or an
            ItemCollection of one item).
        assets: Asset keys or common names, for a STAC input only.

    Returns:
        The inputs for :func:`~torchgeo_ext.export.raster.open_inputs`.

    Raises:
        InvalidInputError: For ``assets`` without a STAC input, a STAC input
            beside other inputs, or a collection of several items.
    """
    stac = [p for p in inputs if is_stac(p)]
    if not stac:
        if assets:
            raise InvalidInputError(
                None, '--assets chooses assets of a STAC item: give an item.json'
            )
        return list(inputs)
    if len(inputs) > 1:
        raise InvalidInputError(
            stac[0], 'a STAC item stands for all the rasters: give it alone'
        )
    items = stac_assets(stac[0], assets)
    if len(items) != 1:
        raise InvalidInputError(
            stac[0],
            f'holds {len(items)} items; run them with torchgeo-ext predict-many',
        )
    return list(items[0])
