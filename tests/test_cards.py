"""Deviation cards (clipbench.cards): what an entry must hold, how a card renders, and that every built-in has one."""

import dataclasses

import pytest

from clipbench import Deviation, Method
from clipbench.cards import card_of, render, summary


def _entry(**kw):
    values = dict(aspect="optimiser", reference="SGD", clipbench="AdamW", moves_numbers=True, reason="because")
    values.update(kw)
    return Deviation(**values)


def test_an_entry_is_frozen_and_says_whether_it_moves_numbers():
    d = _entry()
    assert d.effect == "moves numbers" and _entry(moves_numbers=False).effect == "cosmetic"
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.reason = "other"


@pytest.mark.parametrize("field", ["aspect", "reference", "clipbench", "reason"])
def test_an_entry_without_text_in_a_field_is_refused(field):
    with pytest.raises(ValueError, match=field):
        _entry(**{field: " "})


def test_moves_numbers_must_be_a_bool():
    with pytest.raises(TypeError, match="moves_numbers"):
        _entry(moves_numbers="yes")


def test_render_lists_the_reference_and_every_entry_with_its_effect():
    class M(Method):
        name, citation, config_class = "m", "c", object
        reference = "owner/repo, train.py"
        deviations = (_entry(), _entry(aspect="logging", moves_numbers=False, reason="no effect on results"))

        def adapt(self, *a):
            raise NotImplementedError

    text = render(M())
    assert text.splitlines()[0] == "reference: owner/repo, train.py"
    assert "2 known deviations, 1 moves numbers" in text
    assert "- optimiser (moves numbers): reference SGD; clipbench AdamW. because" in text
    assert "- logging (cosmetic)" in text


def test_a_plugin_without_a_card_has_an_empty_one():
    class Bare:  # a plugin's method need not subclass Method
        name = "bare"

    assert card_of(Bare()) == ("", ())
    assert "not stated" in render(Bare()) and "no deviations declared" in render(Bare())
    assert summary(()) == "0 known deviations, 0 move numbers"


# Being rewritten when the cards were written; the lead fills them (and removes them from here).
LEFT_TO_THE_LEAD: set[str] = set()


def _builtins():
    import sys

    from clipbench.plugins import collect, get_plugin_manager

    reg = collect(get_plugin_manager())
    return {name: (m, sys.modules[type(m).__module__]) for name, m in reg.methods.items()
            if reg.owners[("method", name)] == "built-in"}


def test_every_builtin_method_has_a_reference_and_a_card():
    builtins = _builtins()
    assert LEFT_TO_THE_LEAD <= set(builtins)
    for name, (method, module) in builtins.items():
        if name in LEFT_TO_THE_LEAD:
            assert not method.deviations, f"{name} has a card now: remove it from LEFT_TO_THE_LEAD"
            continue
        assert method.reference.strip(), name
        assert method.deviations, name
        for d in method.deviations:
            assert isinstance(d, Deviation), (name, d)
            assert all(str(getattr(d, f)).strip() for f in ("aspect", "reference", "clipbench", "reason")), (name, d)
            assert isinstance(d.moves_numbers, bool), (name, d)
        assert len({d.aspect for d in method.deviations}) == len(method.deviations), f"{name}: an aspect twice"
        pointer = f"Deviation card: `{type(method).__name__}.deviations` below; `clipbench show method {name}`."
        assert pointer in module.__doc__, name


def test_the_known_deviations_of_the_issue_are_on_the_cards():
    cards = {name: {d.aspect: d for d in m.deviations} for name, (m, _) in _builtins().items()}
    assert "100" in cards["tip-adapter-f"]["logit scale"].reference
    assert "test" in cards["tip-adapter-f"]["checkpoint"].reference.lower()
    assert "16 tokens" in cards["coop"]["context length"].reason
    for name in ("aclip", "bitfit", "lora", "full-ft", "flyp", "lp-ft"):
        assert cards[name]["checkpoint"].clipbench == "the last epoch", name
    for name in ("coop", "cocoop", "tip-adapter-f", "aclip", "bitfit", "lora"):
        assert "fp16" in cards[name]["precision"].reference, name
    for name, card in cards.items():
        if name not in LEFT_TO_THE_LEAD | {"zeroshot", "linear-probe"}:
            assert "what is searched" in card, name
