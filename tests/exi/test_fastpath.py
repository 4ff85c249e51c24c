"""The static analysis behind the straight-line decoders: which required fields a grammar always meets."""

from __future__ import annotations

from dataclasses import dataclass

from v2gtool.exi import fastpath, namespaces
from v2gtool.exi.grammar import EE, SE_SIMPLE, UINT, DType, State, _type_grammar

UNSIGNED: tuple[DType, ...] = ((UINT, None, None, None, None),)


@dataclass(frozen=True)
class Pair:
    a: int
    b: int
    items: tuple[int, ...] = ()


def _met(states: tuple[State, ...]) -> frozenset[str]:
    return fastpath._always_met(_type_grammar(0, Pair, states, UNSIGNED))


def test_a_sequence_meets_its_fields() -> None:
    states: tuple[State, ...] = (
        (1, ((SE_SIMPLE, "a", 0, 1),)),
        (1, ((SE_SIMPLE, "b", 0, 2),)),
        (2, ((SE_SIMPLE, "items", 0, 2), (EE, "", 0, -1))),  # a list: any number of items, then EE
    )
    assert _met(states) == {"a", "b"}


def test_an_early_end_or_a_choice_leaves_fields_unmet() -> None:
    early_end: tuple[State, ...] = (
        (2, ((SE_SIMPLE, "a", 0, 1), (EE, "", 0, -1))),
        (1, ((SE_SIMPLE, "b", 0, 2), (SE_SIMPLE, "items", 0, 2))),
        (1, ((EE, "", 0, -1),)),
    )
    assert _met(early_end) == set()
    choice: tuple[State, ...] = (
        (1, ((SE_SIMPLE, "a", 0, 1),)),
        (1, ((SE_SIMPLE, "b", 0, 2), (SE_SIMPLE, "items", 0, 2))),
        (1, ((EE, "", 0, -1),)),
    )
    assert _met(choice) == {"a"}


def test_the_schema_sets_need_no_runtime_check() -> None:
    """Every type of every schema set meets its required fields on each path to EE: the decoders
    generated for them skip the check (and a grammar that did not would keep it)."""
    for ns in namespaces.NAMESPACES:
        for grammar in namespaces.grammar(ns.short).types:
            assert grammar.required <= fastpath._always_met(grammar), (ns.short, grammar.cls.__name__)
