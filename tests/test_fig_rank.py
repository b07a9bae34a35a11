"""The rank figure's criterion (paper_figs/fig_rank.py) on hand-made per-seed measurements: the
protocol's verdict follows the ranks, a point that does not fit is reported and never judged,
and the λ = 0 control fails a fixed-epochs ordering that also appears without decay."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paper_figs import _verdict, fig_rank  # noqa: E402


def _cell(ranks, acc=1.0, exposure=1.0, steps=100):
    ms = [
        {"acc": acc, "ranks": [r, r / 2], "stable": 3.0, "steps": steps, "exposure": exposure,
         "classes": 10}
        for r in ranks
    ]
    return fig_rank._summary(ms)


def _summ(protocol, rows):
    """rows: {(λ, η): {B: (per-seed ranks, acc)}}"""
    return {
        (protocol, lam, lr, b): _cell(ranks, acc)
        for (lam, lr), row in rows.items()
        for b, (ranks, acc) in row.items()
    }


ORDERED = {4: ([20, 21, 20], 1.0), 20: ([40, 41, 40], 1.0), 100: ([60, 60, 61], 1.0)}
FLAT = {4: ([60, 61, 60], 1.0), 20: ([60, 60, 61], 1.0), 100: ([61, 60, 60], 1.0)}


@pytest.mark.parametrize(
    "rows, word",
    [
        ({(0.0, 0.1): FLAT, (1e-3, 0.1): ORDERED}, _verdict.BORNE_OUT),
        ({(0.0, 0.1): FLAT, (1e-3, 0.1): FLAT}, _verdict.NOT_BORNE_OUT),
        # the ordering without decay too: not the decay's doing
        ({(0.0, 0.1): ORDERED, (1e-3, 0.1): ORDERED}, _verdict.NOT_BORNE_OUT),
        # a falling rank with B
        ({(1e-3, 0.1): {4: ([60, 60, 60], 1.0), 100: ([20, 20, 20], 1.0)}}, _verdict.NOT_BORNE_OUT),
        # ordered means, but intervals that overlap
        ({(1e-3, 0.1): {4: ([10, 60, 30], 1.0), 100: ([60, 61, 60], 1.0)}}, _verdict.NOT_BORNE_OUT),
    ],
)
def test_protocol_verdict_follows_the_ranks(rows, word):
    *_, got, _ = fig_rank._judge_protocol(_summ("epochs", rows), "epochs", "digits")
    assert got == word


def test_points_that_do_not_fit_are_reported_not_judged():
    rows = {(1e-3, 0.1): {4: ([20, 20, 20], 1.0), 100: ([60, 60, 60], 0.9)}}
    parts, judged, reported, word, ordering = fig_rank._judge_protocol(
        _summ("epochs", rows), "epochs", "digits"
    )
    # one fitting B is no comparison: nothing judged, so the verdict is outside
    assert word == _verdict.OUTSIDE and not judged and len(reported) == 2 and not ordering
    rows[(1e-3, 0.1)][20] = ([40, 40, 40], 1.0)
    parts, judged, reported, word, ordering = fig_rank._judge_protocol(
        _summ("epochs", rows), "epochs", "digits"
    )
    # B = 4 and 20 fit and are ordered; B = 100 (train acc 0.9) is reported only
    assert word == _verdict.BORNE_OUT and len(judged) == 2 and len(reported) == 1
    assert "acc 0.900" in parts[0] and "(out:" not in " ".join(r.text() for r in reported)


def test_steps_of_the_two_protocols():
    # fixed epochs: E·N/B steps; fixed ηλ·steps: the smallest B's, for every B
    assert fig_rank._steps("epochs", 1000, 100, 20, 4) == 5000
    assert fig_rank._steps("exposure", 1000, 100, 20, 4) == 25000
    points = fig_rank._points("rank", "fast")
    for (name, protocol, lam, lr, b, seed), sets in points.items():
        steps = round(sets["sgd.t1"] / lr)
        assert steps == (500 * 40 // b if protocol == "epochs" else 500 * 40 // 4)
        assert not (protocol == "exposure" and (lam == 0 or b == 4))


def test_only_the_control_judged_is_outside_not_borne_out():
    """λ = 0 fits and is flat, but no λ > 0 setting has two fitting batch sizes: the claim (about
    λ > 0) has no evidence, so the protocol is outside its hypotheses, never "borne out"."""
    unfit = {b: (ranks, 0.5) for b, (ranks, _) in ORDERED.items()}
    rows = {(0.0, 0.1): FLAT, (1e-3, 0.1): unfit}
    parts, judged, reported, word, ordering = fig_rank._judge_protocol(
        _summ("epochs", rows), "epochs", "digits"
    )
    assert word == _verdict.OUTSIDE and not ordering and len(judged) == 3


def _fixed(certified: bool, tail: float) -> dict:
    """A hand-made record of the B = N check: GD's end, the flow after it, the certificate."""
    return {
        "n": 4,
        "end_relative_velocity": 0.25,
        "end_tails": [1e-13, 1e-13, None],
        "tail_relative_velocity": 0.2,
        "flow": {"num_steps": 1234, "status": "success", "wall_time": 1.0},
        "certified": certified,
        "verdict": "certified" if certified else "not settled",
        "relative_residual": 3e-16 if certified else 6e-3,
        "identity_defects": [1e-15, 2e-15],
        "n_switching": 9,
        "n_dying": 4,
        "tails": [tail, tail / 2, None],
    }


@pytest.mark.parametrize(
    "certified, tail, word",
    [
        (True, 6e-17, _verdict.BORNE_OUT),
        (True, 1e-3, _verdict.NOT_BORNE_OUT),  # a (B+1)-th singular value at a fixed point
        (False, 6e-17, _verdict.OUTSIDE),  # small tails at an uncertified point prove nothing
    ],
)
def test_rank_at_most_b_is_judged_only_at_a_certified_point(certified, tail, word):
    text = fig_rank._fixed_point_check(_fixed(certified, tail))
    assert text.endswith(word) or f": {word} (" in text, text
    assert "then the flow for λ·t=20 more (1,234 steps, success" in text
    where = "certified point" if certified else "run's end"
    assert f"max σ_(B+1)/σ_1 at the {where}" in text
