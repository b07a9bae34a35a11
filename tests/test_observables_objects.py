"""Observations as objects: ``gf.Observable(name, fn, dims, meta)`` and the built-in groups
``gf.OBSERVABLES`` ("nc", "rank", "margins", "weights"), accepted by ``gf.observe`` by name or
as objects, static in a compiled function, described in the results files; bad input refused
with one line."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_nets import relu_outputs

import gradflow as gf
from gradflow import _observables
from gradflow.models import MLP


def _spectral_norms(problem, state):
    return {"spec": jnp.stack([jnp.linalg.norm(w, 2) for w in problem.to_weights(state)])}


SPEC = gf.Observable(
    "spec",
    _spectral_norms,
    dims={"spec": ("layer",)},
    meta={"spec": {"long_name": "||W_k||_2", "units": "1", "theory": "THEORY 5"}},
)


@pytest.fixture(scope="module")
def problem_state():
    data = gf.data.load("gaussian-mixture", n_train=12, n_test=6, dim=4, classes=3, seed=1)
    net = MLP(4, (5, 3), data.num_outputs, init_scale=0.8, key=jax.random.PRNGKey(2))
    problem = gf.Problem(net, data, weight_decay=0.01, normalization="none")
    return problem, problem.initial_state()


_forward = relu_outputs


def test_an_observable_and_the_built_in_groups_equal_numpy(problem_state):
    problem, state = problem_state
    observe = jax.jit(lambda s, groups: gf.observe(problem, s, groups), static_argnums=1)
    out = observe(state, (SPEC, "margins", gf.OBSERVABLES["rank"]))
    ws = [np.asarray(w) for w in problem.to_weights(state)]
    x, y = np.asarray(problem.x_train), np.asarray(problem.y_train)
    # the object's entry: spectral norms by NumPy's SVD
    np.testing.assert_allclose(out["spec"], [np.linalg.svd(w)[1][0] for w in ws], rtol=1e-12)
    # the built-in "margins" by name: y-margins of f / rho from a NumPy forward pass
    f = _forward(ws, x) / np.prod([np.linalg.norm(w) for w in ws])
    label = np.argmax(y, axis=1)
    others = np.where(np.eye(y.shape[1], dtype=bool)[label], -np.inf, f)
    expected = f[np.arange(len(f)), label] - others.max(axis=1)
    np.testing.assert_allclose(out["margins"], expected, rtol=1e-12, atol=1e-15)
    # the built-in "rank" as an object: stable rank ||W||_F^2 / ||W||_2^2
    stable = [np.linalg.norm(w) ** 2 / np.linalg.svd(w)[1][0] ** 2 for w in ws]
    np.testing.assert_allclose(out["stable_rank"], stable, rtol=1e-12)
    # a name stands for its object: one group, one static argument
    assert _observables.resolve(("rank", "margins")) == (
        gf.OBSERVABLES["rank"],
        gf.OBSERVABLES["margins"],
    )


def test_an_observable_is_static_and_hashable():
    again = gf.Observable(
        "spec",
        _spectral_norms,
        dims={"spec": ("layer",)},
        meta={"spec": {"long_name": "||W_k||_2", "units": "1", "theory": "THEORY 5"}},
    )
    assert again == SPEC and hash(again) == hash(SPEC) and not jax.tree.leaves(SPEC)
    assert gf.Observable("spec", lambda p, s: {}) != SPEC
    assert repr(SPEC) == "Observable('spec', fn=_spectral_norms)"
    assert tuple(gf.OBSERVABLES) == ("nc", "rank", "margins", "weights")
    with pytest.raises(TypeError):
        gf.OBSERVABLES["mine"] = SPEC  # the built-in table is read-only


def test_dims_and_meta_follow_the_object_into_the_results_file():
    assert _observables.dims_of((SPEC, "margins"))["spec"] == ("layer",)
    assert _observables.dims_of(("margins",))["margins"] == ("sample",)
    traj = gf.Trajectory(
        kind="flow",
        t=np.array([0.0, 1.0]),
        observables={"spec": np.ones((2, 3)), "loss": np.ones(2)},
        dims={"spec": ("layer",)},
        final_params=(),
        stats={},
        config={"observables": [SPEC]},
    )
    ds = traj.to_xarray()
    assert ds["spec"].attrs["long_name"] == "||W_k||_2" and ds["spec"].dims == ("t", "layer")
    assert ds["loss"].attrs["units"] == "1"
    assert "Observable('spec'" in ds.attrs["config"]


@pytest.mark.parametrize(
    "groups, words",
    [
        (("nx",), ["observe: observables='nx' is not allowed", "'nc', 'rank', 'margins'"]),
        (("margin",), ["observables='margin'", "did you mean 'margins'?"]),
        ((3,), ["observables=3 is not allowed", "use an Observable or one of"]),
    ],
)
def test_an_unknown_group_is_refused_with_one_line(problem_state, groups, words):
    problem, state = problem_state
    with pytest.raises(ValueError) as info:
        gf.observe(problem, state, groups)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


@pytest.mark.parametrize(
    "args, kwargs, words",
    [
        (("not an id", _spectral_norms), {}, "Observable: name='not an id'"),
        (("ok", 3), {}, "Observable: fn=3 is not allowed"),
        (("ok", _spectral_norms), {"dims": {"spec": "layer"}}, "dims={'spec': 'layer'}"),
        (("ok", _spectral_norms), {"meta": {"spec": "||W||"}}, "meta={'spec': '||W||'}"),
    ],
)
def test_a_bad_observable_is_refused_with_one_line(args, kwargs, words):
    with pytest.raises(ValueError) as info:
        gf.Observable(*args, **kwargs)
    assert "\n" not in str(info.value) and words in str(info.value), str(info.value)


def test_an_entry_may_not_take_a_standard_name():
    clash = gf.Observable("clash", lambda p, s: {"rho": jnp.zeros(()), "mine": jnp.zeros(())})
    with pytest.raises(ValueError, match=r"Observable 'clash': entries \['rho'\]"):
        clash(None, None)
    not_a_dict = gf.Observable("bad", lambda p, s: jnp.zeros(()))
    with pytest.raises(ValueError, match="fn returned ArrayImpl; return a dict"):
        not_a_dict(None, None)


def test_register_observable_is_a_deprecated_alias(problem_state):
    problem, state = problem_state
    try:
        with pytest.warns(DeprecationWarning, match="gf.Observable"):
            group = gf.register_observable("_t_spec", _spectral_norms, {"spec": ("layer",)})
        assert group == gf.Observable("_t_spec", _spectral_norms, {"spec": ("layer",)})
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # using the name warns no more
            (by_name,) = _observables.resolve(("_t_spec",))
        np.testing.assert_array_equal(by_name(problem, state)["spec"], SPEC(problem, state)["spec"])
        assert "_t_spec" not in gf.OBSERVABLES
    finally:
        _observables.GROUPS.pop("_t_spec", None)
