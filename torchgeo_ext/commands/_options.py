"""Validated option types for the command line (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

__all__ = [
    'at_least',
    'band_numbers',
    'check_device',
    'count_or_fraction',
    'device',
    'device_count',
    'finite_float',
    'non_negative_float',
    'non_negative_int',
    'odd_positive_int',
    'open_unit_float',
    'positive_float',
    'positive_int',
    'unit_float',
]


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected an integer, got {value!r}'
        ) from None


def _float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a number, got {value!r}') from None
    if math.isnan(number):
        raise argparse.ArgumentTypeError('NaN is not a valid value')
    return number


def positive_int(value: str) -> int:
    """An integer > 0.

    Args:
        value: The command-line text.

    Returns:
        The integer.

    Raises:
        argparse.ArgumentTypeError: If it is not a positive integer.
    """
    number = _int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f'must be positive, got {number}')
    return number


def band_numbers(value: str) -> list[int]:
    """A comma-separated list of 1-based band numbers, such as ``1`` or ``1,2``.

    Args:
        value: The option's text.

    Returns:
        The band numbers.

    Raises:
        argparse.ArgumentTypeError: If an entry is not a positive integer.
    """
    numbers = [_int(part) for part in value.split(',')]
    if any(n < 1 for n in numbers):
        raise argparse.ArgumentTypeError(f'band numbers start at 1, got {value!r}')
    return numbers


def count_or_fraction(value: str) -> int | float:
    """A count (integer >= 1) or a fraction in (0, 1).

    Args:
        value: The command-line text.

    Returns:
        The count, or the fraction.

    Raises:
        argparse.ArgumentTypeError: If it is neither.
    """
    return positive_int(value) if value.strip().isdigit() else open_unit_float(value)


def device_count(value: str) -> int | str:
    """``auto`` or a positive number of devices (Lightning's ``devices``).

    Args:
        value: The command-line text.

    Returns:
        ``'auto'`` or the number.

    Raises:
        argparse.ArgumentTypeError: If it is neither.
    """
    return value if value == 'auto' else positive_int(value)


def non_negative_int(value: str) -> int:
    """An integer >= 0.

    Args:
        value: The command-line text.

    Returns:
        The integer.

    Raises:
        argparse.ArgumentTypeError: If it is negative or not an integer.
    """
    number = _int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f'must not be negative, got {number}')
    return number


def at_least(minimum: int) -> Callable[[str], int]:
    """An integer type with a lower bound, e.g. ``type=at_least(8)``.

    Args:
        minimum: The smallest value accepted.

    Returns:
        The argparse type.
    """

    def parse(value: str) -> int:
        number = _int(value)
        if number < minimum:
            raise argparse.ArgumentTypeError(
                f'must be at least {minimum}, got {number}'
            )
        return number

    parse.__name__ = f'integer >= {minimum}'
    return parse


def odd_positive_int(value: str) -> int:
    """An odd integer > 0 (window sides centred on a pixel).

    Args:
        value: The command-line text.

    Returns:
        The integer.

    Raises:
        argparse.ArgumentTypeError: If it is not an odd positive integer.
    """
    number = positive_int(value)
    if number % 2 == 0:
        raise argparse.ArgumentTypeError(f'must be odd, got {number}')
    return number


def finite_float(value: str) -> float:
    """A finite number (NaN and infinities refused).

    Args:
        value: The command-line text.

    Returns:
        The number.

    Raises:
        argparse.ArgumentTypeError: If it is not a finite number.
    """
    number = _float(value)
    if math.isinf(number):
        raise argparse.ArgumentTypeError(f'must be finite, got {number}')
    return number


def positive_float(value: str) -> float:
    """A finite number > 0.

    Args:
        value: The command-line text.

    Returns:
        The number.

    Raises:
        argparse.ArgumentTypeError: If it is not a positive finite number.
    """
    number = finite_float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f'must be positive, got {number}')
    return number


def non_negative_float(value: str) -> float:
    """A finite number >= 0.

    Args:
        value: The command-line text.

    Returns:
        The number.

    Raises:
        argparse.ArgumentTypeError: If it is negative or not a finite number.
    """
    number = finite_float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f'must not be negative, got {number}')
    return number


def unit_float(value: str) -> float:
    """A number in [0, 1] (IoU, score thresholds); NaN refused.

    Args:
        value: The command-line text.

    Returns:
        The number.

    Raises:
        argparse.ArgumentTypeError: If it is outside [0, 1] or NaN.
    """
    number = _float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f'must be in [0, 1], got {number}')
    return number


def open_unit_float(value: str) -> float:
    """A number in (0, 1) (quantiles); NaN refused.

    Args:
        value: The command-line text.

    Returns:
        The number.

    Raises:
        argparse.ArgumentTypeError: If it is outside (0, 1) or NaN.
    """
    number = _float(value)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(
            f'must be strictly between 0 and 1, got {number}'
        )
    return number


_DEVICE = re.compile(r'^(cpu|cuda|mps|xpu)(:\d+)?$')


def device(value: str) -> str:
    """A torch device name: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``xpu``.

    Args:
        value: The command-line text.

    Returns:
        The device name.

    Raises:
        argparse.ArgumentTypeError: If it is no device name torch knows.
    """
    name = value.strip().lower()
    if not _DEVICE.match(name):
        raise argparse.ArgumentTypeError(
            f'unknown device {value!r}; use cpu, cuda, cuda:N, mps or xpu'
        )
    return name


def check_device(name: str) -> None:
    """Check that a device exists on this machine.

    Args:
        name: A name accepted by :func:`device`.

    Raises:
        InvalidInputError: If the device is not available here.
    """
    import torch

    from ..errors import InvalidInputError

    kind, _, index = name.partition(':')
    if kind == 'cpu':
        return
    if kind == 'cuda':
        available = torch.cuda.is_available()
        count = torch.cuda.device_count() if available else 0
    elif kind == 'mps':
        available = torch.backends.mps.is_available()
        count = 1 if available else 0
    else:
        xpu = getattr(torch, 'xpu', None)
        available = bool(xpu is not None and xpu.is_available())
        count = xpu.device_count() if available and xpu is not None else 0
    if not available:
        raise InvalidInputError(
            None,
            f'--device {name}: no {kind} device is available here; use --device cpu',
        )
    if index and int(index) >= count:
        raise InvalidInputError(
            None, f'--device {name}: this machine has {count} {kind} device(s)'
        )
