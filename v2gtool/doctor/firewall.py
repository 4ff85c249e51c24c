"""What an nftables ruleset (``nft --json list ruleset``) lets in on the PLC interface.

Only what decides the doctor's finding is modelled: IPv6 input base chains (families ``inet`` and
``ip6``), rules that apply to packets arriving on the PLC interface, their accept/drop verdicts,
jumps into regular chains, and the destination ports accept rules open. Rules for established
connections, ICMPv6 and other interfaces open nothing new; any other accept rule without a
port match opens everything.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from v2gtool.errors import V2GToolError

PortKey = tuple[str, int]  # ("tcp" | "udp", port)
_BENIGN_CT_STATES = {"established", "related"}
_MAX_JUMP_DEPTH = 16  # nft itself limits jumps; this only guards against loops in crafted input


class RulesetError(V2GToolError):
    """``nft --json list ruleset`` printed something that is not an nftables JSON ruleset."""


@dataclass
class Verdict:
    """The outcome for packets arriving on the PLC interface."""

    filtered: bool = False  # an input chain drops what no rule accepts
    accepts_all: str | None = None  # the first rule that accepts without a port match, as text
    open_ports: set[PortKey] = field(default_factory=set)


@dataclass(frozen=True)
class _Rule:
    matches: tuple[dict[str, Any], ...]
    verdict: str | None  # accept, drop, reject, jump, goto, return, or None (counter/log only)
    target: str | None
    text: str


def analyse_ruleset(text: str, interface: str) -> Verdict:
    """Analyse *text* (nft JSON) for packets arriving on *interface*.

    Raises :class:`RulesetError` for anything that is not an nftables JSON ruleset.
    """
    try:
        return _analyse(json.loads(text)["nftables"], interface)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RulesetError(f"nft --json list ruleset: not an nftables JSON ruleset ({type(exc).__name__})") from None


def _analyse(items: list[dict[str, Any]], interface: str) -> Verdict:
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[_Rule]] = {}
    for item in items:
        if "chain" in item:
            chain = item["chain"]
            chains[(chain["family"], chain["table"], chain["name"])] = chain
        elif "rule" in item:
            rule = item["rule"]
            key = (rule["family"], rule["table"], rule["chain"])
            rules.setdefault(key, []).append(_parse_rule(rule.get("expr", [])))
    verdict = Verdict()
    for key, chain in chains.items():
        if key[0] not in ("inet", "ip6") or chain.get("hook") != "input":
            continue
        opened: set[PortKey] = set()
        accepts_all: list[str] = []
        ended = _walk(key, rules, interface, opened, accepts_all, 0)
        # A drop policy filters the interface even when a rule before it accepts everything: that
        # rule is then the finding.
        if ended is True or chain.get("policy") == "drop":
            verdict.filtered = True
            verdict.open_ports |= opened
            if accepts_all and verdict.accepts_all is None:
                verdict.accepts_all = accepts_all[0]
    return verdict


def _parse_rule(exprs: Iterable[dict[str, Any]]) -> _Rule:
    matches: list[dict[str, Any]] = []
    verdict: str | None = None
    target: str | None = None
    for expr in exprs:
        if "match" in expr:
            matches.append(expr["match"])
        for name in ("accept", "drop", "reject", "return"):
            if name in expr:
                verdict = name
        for name in ("jump", "goto"):
            if name in expr:
                verdict, target = name, expr[name]["target"]
    return _Rule(tuple(matches), verdict, target, json.dumps(list(exprs), separators=(",", ":"))[:160])


def _walk(key: tuple[str, str, str], rules: dict[tuple[str, str, str], list[_Rule]], interface: str,
          opened: set[PortKey], accepts_all: list[str], depth: int) -> bool | None:
    """Follow chain *key* for a new packet on *interface*, collecting what accept rules open.

    True when the packet meets an unconditional drop/reject, False at an unconditional accept,
    None when it falls off the end (or returns), so the caller's policy decides.
    """
    if depth > _MAX_JUMP_DEPTH:
        return None
    for rule in rules.get(key, []):
        if not _applies_to(rule, interface):
            continue
        conditions = [m for m in rule.matches if _left_key(m) not in ("iifname", "iif")]
        if rule.verdict in ("jump", "goto") and rule.target is not None:
            ended = _walk((key[0], key[1], rule.target), rules, interface, opened, accepts_all, depth + 1)
            if ended is not None and not conditions:
                return ended
            if rule.verdict == "goto" and not conditions:
                return None
        elif rule.verdict == "accept":
            ports = _ports(conditions)
            if ports:
                opened |= ports
            elif not _benign(conditions):
                accepts_all.append(rule.text)
                if not conditions:
                    return False
        elif rule.verdict in ("drop", "reject") and not conditions:
            return True
        elif rule.verdict == "return" and not conditions:
            return None
    return None


def _left_key(match: dict[str, Any]) -> str | None:
    left = match.get("left")
    if isinstance(left, dict):
        for kind in ("meta", "ct"):
            if kind in left:
                return str(left[kind].get("key"))
        if "payload" in left:
            payload = left["payload"]
            return f"{payload.get('protocol')}.{payload.get('field')}"
    return None


def _values(right: Any) -> list[Any]:
    if isinstance(right, dict) and "set" in right:
        return list(right["set"])
    return right if isinstance(right, list) else [right]


def _applies_to(rule: _Rule, interface: str) -> bool:
    """False when an interface match of *rule* excludes packets arriving on *interface*."""
    for match in rule.matches:
        if _left_key(match) not in ("iifname", "iif"):
            continue
        names = [str(v) for v in _values(match.get("right"))]
        hit = any(fnmatch.fnmatchcase(interface, n.replace("\\*", "*")) for n in names)
        if (match.get("op", "==") == "!=") == hit:
            return False
    return True


def _ports(conditions: list[dict[str, Any]]) -> set[PortKey]:
    """The (protocol, port) pairs a rule's destination-port match accepts."""
    l4 = {"tcp", "udp"}
    for match in conditions:
        if _left_key(match) == "l4proto":
            l4 &= {str(v) for v in _values(match.get("right"))}
    ports: set[PortKey] = set()
    for match in conditions:
        key = _left_key(match)
        if key is None or not key.endswith(".dport") or match.get("op", "==") not in ("==", "in"):
            continue
        protocol = key.split(".")[0]
        protocols = l4 if protocol == "th" else {protocol} & {"tcp", "udp"}
        for value in _values(match.get("right")):
            if isinstance(value, dict) and "range" in value:
                low, high = (int(v) for v in value["range"])
                numbers: Iterable[int] = range(low, high + 1)
            else:
                numbers = [int(value)] if str(value).isdigit() else []
            ports |= {(p, n) for p in protocols for n in numbers}
    return ports


def _benign(conditions: list[dict[str, Any]]) -> bool:
    """Accepting these opens no new service: established/related traffic or ICMPv6."""
    for match in conditions:
        key = _left_key(match)
        values = {str(v) for v in _values(match.get("right"))}
        if key == "state" and values <= _BENIGN_CT_STATES and match.get("op") != "!=":
            return True
        if key == "icmpv6.type" or (key in ("l4proto", "nexthdr") and values <= {"icmpv6", "ipv6-icmp", "58"}):
            return True
    return False
