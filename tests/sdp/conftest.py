"""Two network namespaces joined by a veth pair: an EV side and an SECC side (IPv6 link-local only).

Names carry the prefix ``sdp`` and this process's pid, so parallel runs by other areas don't collide;
the namespaces (and with them the veth ends) are always deleted afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sdp_netns_support import VethLink

from tests.netns import veth_pair


@pytest.fixture(scope="session")
def veth() -> Iterator[VethLink]:
    with veth_pair("sdp") as pair:
        yield VethLink(pair.ev_ns, pair.ev_if, pair.secc_ns, pair.secc_if)
