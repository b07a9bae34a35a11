"""gradflow.testing: the tutorial's conjecture runs (and can fail), the strategies draw what they
say at fixed shapes, and every checker measures a planted violation."""

import ast
import importlib.util
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import gradflow as gf
import gradflow.testing as gft

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorials" / "property_testing.md"


def _conjecture_block() -> str:
    text = TUTORIAL.read_text(encoding="utf-8")
    match = re.search(r"<!-- conjecture -->\s*```python\n(.*?)```", text, flags=re.S)
    assert match, "the tutorial's conjecture block (after <!-- conjecture -->) is missing"
    return match.group(1)


def _run_block(code: str, folder: Path):
    """Write the block to a module file, import it and call its one test function."""
    path = folder / "tutorial_conjecture.py"
    path.write_text(code, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"tutorial_conjecture_{id(path)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [getattr(module, k) for k in dir(module) if k.startswith("test_")]
    assert len(tests) == 1, dir(module)
    tests[0]()


def test_the_tutorial_conjecture_is_short_and_runs(tmp_path):
    code = _conjecture_block()
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) < 20, len(lines)
    assert "gradflow.testing" in code
    _run_block(code, tmp_path)


def test_the_tutorial_conjecture_can_fail(tmp_path):
    """The mutation the tutorial describes: an ascent instead of the flow's velocity."""
    code = _conjecture_block()
    target = "jax.tree.leaves(problem.velocity(state))"
    assert target in code
    mutated = code.replace(target, f"[-v for v in {target}]")
    # no shrinking and no example database: a falsifying example is enough
    decorator = "@settings(max_examples=12, deadline=None)"
    assert decorator in mutated
    mutated = mutated.replace(
        decorator,
        "@settings(max_examples=12, deadline=None, database=None, "
        "phases=[Phase.explicit, Phase.generate])",
    ).replace(
        "from hypothesis import given, settings", "from hypothesis import Phase, given, settings"
    )
    with pytest.raises(AssertionError):
        _run_block(mutated, tmp_path)


def test_gradflow_does_not_import_gradflow_testing():
    """Hypothesis is a test-time dependency: only gradflow.testing imports it."""
    offenders = []
    for path in (ROOT / "gradflow").rglob("*.py"):
        if "testing" in path.relative_to(ROOT / "gradflow").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            if any(
                n.startswith(("hypothesis", "gradflow.testing")) or n == "testing" for n in names
            ):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


# ---- strategies -------------------------------------------------------------------------------


@pytest.mark.parametrize("normalization", gft.PARAMETRIZATIONS)
@settings(max_examples=3)
@given(data=st.data())
def test_problems_draw_at_fixed_shapes(normalization, data):
    assert gft.PARAMETRIZATIONS == ("none", "lm-all", "lm-last", "wn")
    p = data.draw(gft.problems("mlp-small", normalizations=normalization, targets=gft.TARGETS))
    assert p.normalization == normalization and float(p.weight_decay) in (0.0, 1e-3, 0.1)
    assert tuple(w.shape for w in p.model.weights) == ((6, 5), (6, 6), (1, 6))
    assert p.x_train.shape == (16, 5) and p.y_train.shape == (16, 1)


@settings(max_examples=6)
@given(
    problem_state=gft.problem_states(
        ["mlp", "deep-linear", "cnn1d-dense"], weight_decay=gft.weight_decays()
    )
)
def test_states_belong_to_their_problem(problem_state):
    problem, state = problem_state
    ref = problem.initial_state()
    assert jax.tree.structure(state) == jax.tree.structure(ref)
    assert [x.shape for x in jax.tree.leaves(state)] == [x.shape for x in jax.tree.leaves(ref)]
    assert problem.x_train.shape[0] == 16
    # the network's outputs match the targets the strategy made for it
    assert problem.outputs(state).shape == problem.y_train.shape
    if problem.normalization in ("lm-all", "lm-last"):
        assert gft.unit_norm_error(state) <= 1e-14
    assert np.isfinite(float(problem.loss(state)))


@settings(max_examples=4, deadline=None)
@given(
    spec=gft.problem_specs(
        ["mlp-small", "deep-linear"], weight_decay=gft.weight_decays(), targets=gft.TARGETS
    )
)
def test_problem_specs_print_short_and_build_the_same_problem(spec):
    text = repr(spec)
    assert "\n" not in text and len(text) < 200, text
    for field in ("arch=", "seed=", "init_scale=", "weight_decay=", "normalization=", "targets="):
        assert field in text
    assert eval(text, {"ProblemSpec": gft.ProblemSpec}) == spec  # the printed form replays
    a, b = gft.build_problem(spec), spec.build()
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert float(a.weight_decay) == spec.weight_decay and a.normalization == spec.normalization
    assert len(repr(a).splitlines()) <= 3


def test_a_falsifying_problem_prints_as_its_spec_and_replays():
    """A failing property reports ``build_problem(ProblemSpec(...))``: one line to rebuild the
    failing problem, not the problem's 145 lines of arrays."""
    seen = []

    @settings(
        max_examples=20, deadline=None, database=None, phases=[Phase.generate, Phase.shrink]
    )
    @given(p=gft.problems("mlp-small", weight_decay=[0.0, 0.1], normalizations="wn"))
    def prop(p):
        seen.append(p)
        assert float(p.weight_decay) == 0.0

    with pytest.raises(AssertionError) as info:
        prop()
    report = "\n".join(getattr(info.value, "__notes__", []))
    found = re.search(r"build_problem\(\s*(ProblemSpec\(.*?\))", report, flags=re.S)
    assert found, report
    assert len(report) < 400, report  # the spec, not the arrays
    spec = eval(found[1], {"ProblemSpec": gft.ProblemSpec})
    assert spec.weight_decay == 0.1 and spec.normalization == "wn" and spec.arch == "mlp-small"
    replayed = spec.build()  # the same failing problem, rebuilt from the printed line
    assert float(replayed.weight_decay) == 0.1
    np.testing.assert_array_equal(replayed.x_train, seen[-1].x_train)
    np.testing.assert_array_equal(replayed.model.weights[0], seen[-1].model.weights[0])


def test_datasets_make_the_targets_they_name():
    arch = gft.ARCHITECTURES["mlp"]  # three outputs
    labels = gft.make_dataset(arch, targets="labels", seed=3)
    centred = gft.make_dataset(arch, targets="centred", seed=3)
    regression = gft.make_dataset(arch, targets="regression", seed=3)
    np.testing.assert_allclose(labels.y_train.sum(1), 1.0)
    np.testing.assert_allclose(centred.y_train, labels.y_train - 1 / 3)
    assert regression.y_train.shape == (16, 3) and labels.x_train.shape == (16, 6)
    np.testing.assert_array_equal(regression.x_train, labels.x_train)
    two = gft.make_dataset(gft.ARCHITECTURES["deep-linear"], targets="labels", seed=1)
    assert two.y_train.shape == (16, 2) and set(np.unique(two.y_train)) == {0.0, 1.0}
    image = gft.make_dataset(gft.ARCHITECTURES["cnn2d-dense"], seed=1)
    assert image.x_train.shape == (16, 2, 7, 6) and image.y_train.shape == (16, 1)
    assert "seed" not in labels.options  # static in a Problem: one compile for every seed
    with pytest.raises(ValueError, match="targets='noise' is not allowed"):
        gft.make_dataset(arch, targets="noise")
    with pytest.raises(ValueError, match="architecture='resnet' is not allowed"):
        gft.make_dataset("resnet")


# ---- checkers: zero where the identity holds, the violation where it does not -------------


def _plain(normalization="none", lam=0.1, seed=0):
    arch = gft.ARCHITECTURES["mlp-small"]
    return gf.Problem(
        gft.build_network(arch, seed),
        gft.make_dataset(arch, seed=seed),
        weight_decay=lam,
        normalization=normalization,
    )


class _Twice(gf.Problem):
    """A problem whose 'flow' runs at twice the speed of the gradient flow."""

    def velocity(self, state, *args, **kwargs):
        return jax.tree.map(lambda v: 2 * v, super().velocity(state, *args, **kwargs))


def test_state_checkers_measure_planted_violations():
    p = _plain("lm-last")
    state = gft.random_state(p, 1)
    assert gft.unit_norm_error(state) <= 1e-14
    assert gft.tangency_error(p, state) <= 1e-12
    stretched = {**state, "v": (1.5 * state["v"][0],) + state["v"][1:]}
    np.testing.assert_allclose(gft.unit_norm_error(stretched), 0.5, rtol=1e-12)
    # ρ_eq: exactly 0 at ρ = ρ_eq(V), |c − 1| at c ρ_eq
    f = p.outputs(state) / state["rho"]
    r_eq = gf.predict.rho_eq(f, p.y_train, p.weight_decay)
    assert gft.rho_eq_error(p, {**state, "rho": r_eq}) <= 1e-14
    np.testing.assert_allclose(gft.rho_eq_error(p, {**state, "rho": 0.8 * r_eq}), 0.2, rtol=1e-12)

    plain = _plain("none")
    s = plain.initial_state()
    assert gft.balance_rate_error(plain, s) <= 1e-10
    # a vector field twice as fast as the flow breaks the law's rate: the checker sees it
    fast = _Twice(plain.model, gft.make_dataset("mlp-small"), weight_decay=0.1)
    assert gft.balance_rate_error(fast, s) > 1e-3
    with pytest.raises(ValueError, match="normalization='lm-last' is not allowed"):
        gft.balance_rate_error(p, state)

    wn = _plain("wn")
    wn_state = gft.random_state(wn, 2)
    assert gft.wn_norm_growth_error(wn, wn_state, 0.3) <= 1e-12
    with pytest.raises(ValueError, match="normalization='none' is not allowed; use 'wn'"):
        gft.wn_norm_growth_error(plain, s, 0.3)


def test_trajectory_checkers_measure_planted_violations():
    t = np.array([0.0, 0.5, 1.0])
    lam = 0.2
    gap0 = np.array([1.0, -2.0])
    gaps = gap0[None] * np.exp(-2 * lam * t)[:, None]
    loss = np.array([1.0, 0.5, 0.25])

    def traj(obs):
        return gf.Trajectory("flow", t, obs, {}, (), {}, {})

    assert gft.balance_law_error(traj({"balance_gap": gaps}), lam) <= 1e-15
    off = gaps.copy()
    off[2, 1] *= 1.01
    np.testing.assert_allclose(gft.balance_law_error(traj({"balance_gap": off}), lam), 0.01)
    assert gft.loss_increase(traj({"loss": loss})) == pytest.approx(-0.5)
    np.testing.assert_allclose(gft.loss_increase(traj({"loss": [1.0, 0.5, 0.6]})), 0.2)
    assert gft.unit_norm_error(traj({"unit_norm_error": np.array([0.0, 1e-9, 2e-9])})) == 2e-9
