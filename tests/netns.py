"""The package's veth pair for tests: skipped, with the reason, where namespaces are impossible."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from v2gtool.net import netns
from v2gtool.net.netns import VethPair

__all__ = ["VethPair", "veth_pair"]


@contextlib.contextmanager
def veth_pair(prefix: str) -> Iterator[VethPair]:
    try:
        context = netns.veth_pair(prefix)
        pair = context.__enter__()
    except netns.NetnsError as exc:
        pytest.skip(str(exc))
    try:
        yield pair
    finally:
        context.__exit__(None, None, None)
