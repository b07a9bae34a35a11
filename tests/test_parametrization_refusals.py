"""The refusals of ``resolve_parametrization``, word for word (errors are part of the interface).

Every refusal is one line, ``<where>: <name>=<value> is not allowed; <what is allowed>``; the
lists of allowed values are spelt out in full here (the four shorthands, the two freezable
ones), so that a changed list, separator or case is seen, not only the start of the line.
"""

import re

import pytest

import gradflow as gf
from gradflow import _parametrization as par

ALLOWED_NORMALIZATIONS = (
    "use one of 'none', 'lm-all', 'lm-last', 'wn' or a gf.Plain/LMAll/LMLast/WeightNorm instance"
)
FREEZABLE = "it applies to normalization 'lm-all' or 'lm-last' only"


@pytest.mark.parametrize("bad", ["lm", "LM-LAST", 3, None])
def test_an_unknown_normalization_is_refused_with_the_full_list(bad):
    expected = f"Problem: normalization={bad!r} is not allowed; {ALLOWED_NORMALIZATIONS}"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        par.resolve_parametrization(bad)


@pytest.mark.parametrize(
    "normalization, name",
    [("none", "none"), ("wn", "wn"), (gf.Plain(), "none"), (gf.WeightNorm(), "wn")],
)
def test_freezing_a_parametrization_without_directions_is_refused(normalization, name):
    expected = f"Z: freeze_directions=True is not allowed; {FREEZABLE}, not {name!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        par.resolve_parametrization(normalization, True, where="Z")


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_freeze_directions_must_be_a_bool(bad):
    expected = f"Problem: freeze_directions={bad!r} is not allowed; use True or False"
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        par.resolve_parametrization("lm-last", bad)


def test_the_shorthands_and_the_freezable_ones_are_exactly_the_documented_sets():
    assert par.NORMALIZATIONS == ("none", "lm-all", "lm-last", "wn")
    assert par.FREEZABLE == ("lm-all", "lm-last")
    for name in par.FREEZABLE:
        frozen = par.resolve_parametrization(name, True)
        assert frozen.freezes_directions is True
        assert frozen.describe() == name + " (directions frozen)"
        free = par.resolve_parametrization(name)
        assert free.freezes_directions is False and free.describe() == name
