"""Option types shared by the subcommands: numbers that must be finite, MAC addresses, and values a
check function accepts (:func:`validated`).

``click``'s own float types take ``nan`` and ``inf`` (every comparison with a bound of a range is
false for ``nan``), which then reach timers, set-points and frame builders as values no physical
quantity has; these refuse them as a usage error naming the option.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

T = TypeVar("T")

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


class _Finite(click.ParamType[float]):
    """Mixin: the float the next type in the MRO converts, refused when it is nan or infinite."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class FiniteFloat(_Finite, click.types.FloatParamType):
    """Any finite float."""


class FiniteFloatRange(_Finite, click.FloatRange):
    """A finite float within ``click.FloatRange``'s bounds."""


class MacAddress(click.ParamType[str]):
    """An IEEE 802 MAC address written as six colon-separated octets; given back in lower case.

    With *unicast*, the address of one station: the group bit (I/G, the least significant bit of
    the first octet, IEEE 802-2014 8.2) clear, so no broadcast or multicast, and not all zeros.
    """

    name = "mac"

    def __init__(self, *, unicast: bool = False) -> None:
        self.unicast = unicast

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip().lower().replace("-", ":")
        if not _MAC.fullmatch(text):
            self.fail(f"{value!r} is not a MAC address (six octets, e.g. 00:b0:52:00:00:01).", param, ctx)
        if self.unicast:
            octets = bytes.fromhex(text.replace(":", ""))
            if not any(octets) or octets[0] & 1:
                kind = "all zeros" if not any(octets) else "a broadcast or multicast address"
                self.fail(f"{value!r} is {kind}; the address of one station is needed.", param, ctx)
        return text


def validated(check: Callable[[T], T]) -> Callable[[click.Context, click.Parameter, T | None], T | None]:
    """A click callback that passes an option's value through *check*, its ValueError a usage error."""

    def callback(ctx: click.Context, param: click.Parameter, value: T | None) -> T | None:
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as exc:
            raise click.BadParameter(f"{str(value)!r} {exc}", ctx, param) from None

    return callback
