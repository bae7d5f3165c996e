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
