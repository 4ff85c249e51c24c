"""The firewall check on real nftables rulesets: loaded with nft in a network namespace of our own."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2gtool.deploy import FILES, Placeholders, render
from v2gtool.doctor.checks import Settings, check_firewall
from v2gtool.doctor.environment import CommandResult, Environment
from v2gtool.doctor.findings import Status
from v2gtool.doctor.firewall import RulesetError, analyse_ruleset

SETTINGS = Settings(plc_interface="eth1", certs_dir=Path("/nonexistent"), trust_dir=Path("/nonexistent"),
                    secc_tcp_port=49152)
_names = itertools.count()


def _environment(answer: CommandResult | None) -> Environment:
    def run(argv: Sequence[str]) -> CommandResult | None:
        assert list(argv) == ["nft", "--json", "list", "ruleset"]
        return answer

    return Environment(run=run)


def test_nft_missing_is_a_warning() -> None:
    finding = check_firewall(_environment(None), SETTINGS)
    assert finding.status is Status.WARN
    assert finding.fix is not None and "apt-get install nftables" in finding.fix


def test_nft_refused_is_a_warning() -> None:
    finding = check_firewall(_environment(CommandResult(1, "", "Operation not permitted")), SETTINGS)
    assert finding.status is Status.WARN
    assert "Operation not permitted" in finding.summary


def test_garbage_from_nft_is_a_warning_not_a_crash() -> None:
    assert check_firewall(_environment(CommandResult(0, "table inet x {")), SETTINGS).status is Status.WARN
    with pytest.raises(RulesetError):
        analyse_ruleset("[1, 2", "eth1")


class Namespace:
    """A network namespace of this test run, where rulesets are loaded with the real nft."""

    def __init__(self, name: str) -> None:
        self.name = name

    def nft(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(["ip", "netns", "exec", self.name, "nft", *args], input=stdin, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def load(self, ruleset: str) -> CommandResult:
        self.nft("flush", "ruleset")
        self.nft("-f", "-", stdin=ruleset)
        return CommandResult(0, self.nft("--json", "list", "ruleset"))


@pytest.fixture(scope="module")
def netns() -> Iterator[Namespace]:
    if shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("nft or ip is not installed (apt-get install nftables iproute2)")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"tools{os.getpid()}x{next(_names)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=30)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        yield Namespace(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def _check(netns: Namespace, ruleset: str) -> tuple[Status, str]:
    finding = check_firewall(_environment(netns.load(ruleset)), SETTINGS)
    return finding.status, finding.summary


@pytest.mark.netns
def test_shipped_snippet_opens_exactly_sdp_and_the_secc_port(netns: Namespace) -> None:
    snippet = next(f for f in FILES if f.name == "v2g.nft")
    text = render(snippet, Placeholders(executable=Path("/usr/bin/v2gtool"), plc_interface="eth1",
                                        secc_tcp_port=49152))
    status, summary = _check(netns, text)
    assert (status, summary) == (Status.OK, "only TCP 49152, UDP 15118 open on eth1")


@pytest.mark.netns
def test_shipped_snippet_for_another_interface_does_not_filter_ours(netns: Namespace) -> None:
    snippet = next(f for f in FILES if f.name == "v2g.nft")
    text = render(snippet, Placeholders(executable=Path("/usr/bin/v2gtool"), plc_interface="eth7"))
    assert _check(netns, text)[0] is Status.FAIL


FILTER = ("table inet filter {{\n chain input {{\n  type filter hook input priority 0; policy {policy};\n"
          "{rules}\n }}\n}}\n")


@pytest.mark.netns
@pytest.mark.parametrize(("ruleset", "status", "summary"), [
    ("", Status.FAIL, "traffic on eth1 is not filtered (no drop policy)"),
    (FILTER.format(policy="accept", rules="udp dport 15118 accept\ntcp dport 49152 accept"), Status.FAIL,
     "traffic on eth1 is not filtered (no drop policy)"),
    (FILTER.format(policy="drop", rules="ct state established,related accept\niif lo accept\n"
                   "tcp dport 22 accept\nudp dport 15118 accept\ntcp dport 49152 accept"),
     Status.WARN, "also open on eth1: TCP 22"),
    (FILTER.format(policy="accept", rules="iifname eth1 jump plc\n }\n chain plc {\n meta l4proto ipv6-icmp accept\n"
                   "udp dport 15118 accept\ntcp dport { 49152-49160 } accept\ndrop"),
     Status.WARN, "also open on eth1: TCP 49153-49160"),
    (FILTER.format(policy="drop", rules="udp dport 15118 accept"), Status.FAIL,
     "TCP 49152 blocked on eth1: the car cannot reach the SECC"),
    (FILTER.format(policy="drop", rules='iifname "eth*" accept'), Status.FAIL, "a rule accepts all traffic"),
    (FILTER.format(policy="drop", rules='iifname "eth0" accept\nudp dport 15118 accept\nth dport 49152 accept'),
     Status.WARN, "also open on eth1: UDP 49152"),
    ("table ip filter {\n chain input {\n type filter hook input priority 0; policy drop;\n }\n}\n", Status.FAIL,
     "traffic on eth1 is not filtered (no drop policy)"),
])
def test_rulesets(netns: Namespace, ruleset: str, status: Status, summary: str) -> None:
    got_status, got_summary = _check(netns, ruleset)
    assert got_status is status
    assert got_summary.startswith(summary)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.sampled_from(["eth1", "lo", "tcp", "udp", "th", "drop",
                                                                          "accept", "input", "inet", "ip6", "dport"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["nftables", "chain", "rule", "family", "table", "name", "hook", "policy", "expr",
                                       "match", "op", "left", "right", "meta", "key", "payload", "protocol", "field",
                                       "set", "range", "accept", "drop", "jump", "target", "ct"]), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(document=json_values)
def test_any_json_gives_a_verdict_or_a_ruleset_error(document: object) -> None:
    try:
        verdict = analyse_ruleset(json.dumps(document), "eth1")
    except RulesetError:
        return
    assert all(proto in ("tcp", "udp") for proto, _ in verdict.open_ports)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_gives_a_verdict_or_a_ruleset_error(text: str) -> None:
    with contextlib.suppress(RulesetError):
        analyse_ruleset(text, "eth1")
