"""The SDE of SGD (THEORY 3.4): the noise operator, Itô handling, and SDE against SGD.

Statistical tests report their numbers with ``-s`` (pytest's capture off).
"""

from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow import _loss, _observables
from gradflow import diffrax_ext as _noise
from gradflow.analysis import ensemble_summary, sde_vs_sgd
from gradflow.data import Dataset
from gradflow.diffrax_ext import SGDNoise
from gradflow.dynamics._batch import groups_of, plan, run_plans
from gradflow.models import MLP, DeepLinear
from gradflow.testing import linreg_stationary_covariance

NORMS = ("none", "lm-all", "lm-last", "wn")

FIRST_W = gf.Observable(
    "_test_w", lambda p, s: {"w": p.to_weights(s)[0].ravel()}, {"w": ("param",)}
)


def _small_problem(normalization="none", lam=0.1, n=7, seed=0):
    data = gf.data.load("gaussian-mixture", n_train=n, n_test=0, dim=3, classes=3, seed=seed)
    net = MLP(3, (4,), 3, key=jax.random.PRNGKey(seed))
    return gf.Problem(net, data, weight_decay=lam, normalization=normalization)


def _linreg(n, scales, noise=0.5, offset=None, seed=0):
    """One-layer linear model ``f = w·x``, noisy targets; starts at the optimum (+ offset)."""
    rng = np.random.default_rng(seed)
    d = len(scales)
    x = rng.standard_normal((n, d)) * np.sqrt(scales)
    y = (x @ np.linspace(1.0, -0.5, d) + noise * rng.standard_normal(n))[:, None]
    wstar = np.linalg.lstsq(x, y[:, 0], rcond=None)[0]
    w0 = wstar if offset is None else wstar + offset
    net = DeepLinear(d, (), 1, key=jax.random.PRNGKey(0)).with_weights((jnp.asarray(w0[None]),))
    return gf.Problem(net, Dataset("linreg", x, y)), x, y, wstar


# ---- the noise operator: exact identities --------------------------------------------------


def test_noise_coefficient():
    assert _noise.noise_coefficient(10, 4, "with-replacement") == 0.25
    assert _noise.noise_coefficient(10, 4, "without-replacement") == pytest.approx(6 / 36)
    assert _noise.noise_coefficient(10, 10, "without-replacement") == 0.0
    assert _noise.noise_coefficient(10, 1, "without-replacement") == 1.0  # = with, B = 1
    assert SGDNoise(0.1, 2, "with-replacement").scale(8) == pytest.approx(np.sqrt(0.1 / 2 / 8))


@pytest.mark.parametrize("normalization", NORMS)
@pytest.mark.parametrize("sampling", ["without-replacement", "with-replacement"])
def test_g_gt_is_the_minibatch_covariance(normalization, sampling):
    """``G Gᵀ = η P Σ Pᵀ`` with Σ formed from explicit per-sample gradients (= η Σ for none)."""
    p = _small_problem(normalization)
    state = p.initial_state()
    noise = SGDNoise(0.3, 3, sampling)
    n = p.n_train
    flat, unravel = ravel_pytree(state)

    def losses(f):
        return _loss.sample_losses(p.model, p.to_weights(unravel(f)), p.x_train, p.y_train)

    g = jax.jacrev(losses)(flat)  # (N, P): per-sample gradients, only in the test
    gc = g - g.mean(0)
    sigma = noise.coefficient(n) * gc.T @ gc / n
    # the linear map gradient -> velocity, sign flipped (identity for none/wn)
    proj = jax.jacfwd(lambda v: -ravel_pytree(p.velocity_from_grad(state, unravel(v)))[0])(
        jnp.zeros_like(flat)
    )
    op = _noise.noise_operator(p, state, jnp.asarray(noise.scale(n)))
    cols = jax.vmap(lambda e: ravel_pytree(op.mv(e))[0], out_axes=1)(jnp.eye(n))  # (P, N)
    expected = noise.lr * proj @ sigma @ proj.T
    np.testing.assert_allclose(cols @ cols.T, expected, atol=1e-13 * np.abs(expected).max())
    # column n is −sqrt(η c / N) P (g_n − ḡ): one VJP per ξ reproduces it exactly
    np.testing.assert_allclose(cols, -noise.scale(n) * proj @ gc.T, atol=1e-13 * np.abs(cols).max())
    if normalization == "none":
        np.testing.assert_allclose(cols @ cols.T, noise.lr * sigma, atol=1e-12)


def test_fused_term_is_drift_plus_control_term():
    """``SGDTerm.vf_prod`` (one gradient) = ``MultiTerm(ODETerm(v), ControlTerm(G, β))``."""
    p = _small_problem("lm-last", lam=0.05)
    y = p.initial_state()
    scale = jnp.asarray(SGDNoise(0.1, 2).scale(p.n_train))
    path = diffrax.VirtualBrownianTree(0.0, 1.0, 1e-3, (p.n_train,), jax.random.key(3))
    fused = _noise.SGDTerm(scale, path)
    multi = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: args.velocity(y)), _noise.diffusion_term(scale, path)
    )
    c_fused, c_multi = fused.contr(0.2, 0.45), multi.contr(0.2, 0.45)
    a = ravel_pytree(fused.vf_prod(0.2, y, p, c_fused))[0]
    b = ravel_pytree(multi.vf_prod(0.2, y, p, c_multi))[0]
    c = ravel_pytree(fused.prod(fused.vf(0.2, y, p), c_fused))[0]
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-14)


def test_full_batch_without_replacement_is_the_euler_ode():
    """``c = 0`` at ``B = N`` without replacement: no noise, the SDE is the ODE's Euler."""
    p = _small_problem("lm-last", lam=0.05)
    op = _noise.noise_operator(p, p.initial_state(), jnp.asarray(SGDNoise(0.1, 7).scale(7)))
    assert all(np.all(leaf == 0) for leaf in jax.tree.leaves(op.mv(jnp.arange(7.0))))
    kw = dict(t1=2.0, save_every=0.5, dt0=0.025)
    sde = gf.flow(p, noise=SGDNoise(0.1, 7), key=jax.random.key(0), **kw)
    ode = gf.flow(p, solver="euler", **kw)
    assert sde.kind == "sde" and sde.stats["noise_coefficient"] == 0.0
    np.testing.assert_allclose(sde["loss"], ode["loss"], rtol=1e-12)
    for a, b in zip(sde.final_params, ode.final_params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


# ---- the integrator ------------------------------------------------------------------------


def test_ensembles_one_compilation(monkeypatch):
    """Seeds are one vmap; LM norms stay 1; changing lr, B or sampling does not recompile."""
    data = gf.data.load("gaussian-mixture", n_train=11, n_test=5, dim=4, seed=1)
    p = gf.Problem(
        MLP(4, (5,), 1, init_scale=0.5, key=jax.random.PRNGKey(1)),
        data,
        weight_decay=0.02,
        normalization="lm-all",
    )
    traces = []
    real = _observables.observe  # traced once per compilation, through _observables.saveat
    monkeypatch.setattr(_observables, "observe", lambda *a: traces.append(1) or real(*a))
    kw = dict(t1=1.0, save_every=0.25, seeds=48)
    fixed = gf.flow(p, noise=SGDNoise(0.05, 2), key=jax.random.key(0), dt0=0.01, **kw)
    n_traces = len(traces)
    other = gf.flow(
        p, noise=SGDNoise(0.2, 4, "with-replacement"), key=jax.random.key(0), dt0=0.01, **kw
    )
    assert len(traces) == n_traces > 0  # the same compiled function for another lr, B
    assert fixed["loss"].shape == (48, 5) and np.allclose(fixed.t, [0, 0.25, 0.5, 0.75, 1])
    assert np.max(fixed["unit_norm_error"]) < 1e-13 and np.max(other["unit_norm_error"]) < 1e-13
    assert fixed.stats["num_steps"] == [100] * 48
    # one evaluation of the fused drift-and-noise term per Euler step, per seed
    assert fixed.stats["num_gradient_evaluations"] == [100] * 48
    assert not np.allclose(fixed["loss"][0], fixed["loss"][1])  # seeds differ
    ds = fixed.to_xarray()
    assert ds["loss"].dims == ("seed", "t") and ds.attrs["kind"] == "sde"


def test_removed_adaptive_solver_is_refused_by_the_cli(tmp_path, capsys):
    """``sde.solver = "euler-adaptive"`` in a scenario: exit 2, one line naming the key, the
    value and what is allowed, nothing written."""
    from gradflow._cli import main

    scenario = str(Path(__file__).resolve().parent.parent / "scenarios" / "sde_vs_sgd.toml")
    out = tmp_path / "out"
    for item, key in (
        ('sde.solver="euler-adaptive"', "sde.solver='euler-adaptive'"),
        ("sde.rtol=1e-3", "sde.rtol=0.001"),
    ):
        code = main(["run", scenario, "--fast", "--quiet", "--out", str(out), "--set", item])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and key in err[0], err
        assert "use one of 'euler'" in err[0] or "allowed in [sde]" in err[0], err
        assert not out.exists()


def test_bad_input_is_named():
    p = _small_problem()
    with pytest.raises(ValueError, match=r"SGDNoise: lr=-1 is not allowed"):
        SGDNoise(-1, 2)
    with pytest.raises(ValueError, match=r"SGDNoise: sampling='poisson' is not allowed"):
        SGDNoise(0.1, 2, "poisson")
    with pytest.raises(ValueError, match=r"batch_size=9 is not allowed; use at most N=7"):
        gf.flow(p, t1=1.0, noise=SGDNoise(0.1, 9), key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"solver='heun'.*Stratonovich"):
        gf.flow(p, t1=1.0, noise=SGDNoise(0.1, 2), key=jax.random.key(0), solver="heun")
    with pytest.raises(ValueError, match=r"solver='SPaRK'.*Stratonovich"):
        gf.flow(p, t1=1.0, noise=SGDNoise(0.1, 2), key=jax.random.key(0), solver=diffrax.SPaRK())
    with pytest.raises(ValueError, match=r"solver='euler-adaptive' is not allowed; use 'euler' "):
        gf.flow(p, t1=1.0, noise=SGDNoise(0.1, 2), key=jax.random.key(0), solver="euler-adaptive")
    for name in ("rtol", "atol", "dtmin"):
        with pytest.raises(
            ValueError, match=rf"flow: {name}=0.001 is not allowed; the SDE takes fixed"
        ):
            gf.flow(p, t1=1.0, noise=SGDNoise(0.1, 2), key=jax.random.key(0), **{name: 1e-3})
    with pytest.raises(ValueError, match=r"key=None is not allowed; the SDE needs a PRNG key"):
        gf.flow(p, t1=1.0, noise=SGDNoise(0.1, 2))
    with pytest.raises(ValueError, match=r"seeds=4 is not allowed; key and seeds apply to the SDE"):
        gf.flow(p, t1=1.0, seeds=4)
    with pytest.raises(RuntimeError, match=r"loss stopped being finite by t=.*2/λ_max = "):
        gf.flow(p, t1=40.0, noise=SGDNoise(2.0, 2), key=jax.random.key(0), dt0=4.0)
    tr = gf.flow(p, t1=40.0, noise=SGDNoise(2.0, 2), key=jax.random.key(0), dt0=4.0, throw=False)
    assert tr.stats["status"] == "diverged" and not np.isfinite(tr["loss"][-1])


# ---- statistics: linear regression ---------------------------------------------------------


def _stationary_z(tr, exact, wstar, burn=6.0):
    """``(Ĉ, z)``: ``Cov(w)`` averaged over paths and save times ``t ≥ burn``, and
    ``(Ĉ_ij − C_ij)/SE_ij`` on the entries ``i ≤ j``. The standard error comes from the spread
    of the per-path time averages: the paths are independent, the times within one are not."""
    dw = tr["w"][:, tr.t >= burn, :] - wstar  # (S, T, d)
    per_path = np.einsum("sti,stj->sij", dw, dw) / dw.shape[1]
    cov = per_path.mean(0)
    se = per_path.std(0, ddof=1) / np.sqrt(len(per_path))
    iu = np.triu_indices(len(exact))
    return cov, ((cov - exact) / se)[iu]


def test_linreg_stationary_covariance_solves_its_equations():
    """The reference covariances satisfy their equations, written here without Kronecker
    products: ``H C + C H − h H C H = η c (Σ₀ + (1/N) Σ_n M_n C M_n)`` (``h = 0``: the SDE;
    ``h = η``: SGD with replacement, ``C = (I − ηH) C (I − ηH) + η² E Σ``)."""
    _, x, y, wstar = _linreg(16, [0.8, 0.5, 0.3])
    n, eta, c = 16, 0.02, 0.5
    r = x @ wstar - y[:, 0]
    a = 2 * r[:, None] * x
    outer = 2 * np.einsum("ni,nj->nij", x, x)
    hess = outer.mean(0)
    for step in (None, eta / 4, eta):
        cov, w = linreg_stationary_covariance(x, y, eta, c, step=step)
        h = 0.0 if step is None else step
        noise = c * (a.T @ a / n + np.mean([(m - hess) @ cov @ (m - hess) for m in outer], 0))
        if step == eta:  # the discrete Lyapunov form of SGD
            i_h = np.eye(3) - eta * hess
            np.testing.assert_allclose(cov, i_h @ cov @ i_h + eta**2 * noise, rtol=1e-12)
        lhs = hess @ cov + cov @ hess - h * hess @ cov @ hess
        np.testing.assert_allclose(lhs, eta * noise, rtol=1e-10, atol=1e-16)
        assert np.all(np.linalg.eigvalsh(cov) > 0)
        np.testing.assert_allclose(w, wstar, rtol=1e-12)


SDE_SOLVERS_TESTED = ("euler",)


def test_stationary_covariance_solves_the_lyapunov_equation():
    """Every public SDE solver and SGD with replacement have the exact stationary ``Cov(w)``.

    Linear regression ``f = w·x`` (d = 3, N = 16, noisy targets, λ = 0), B = 2 with
    replacement, η = 0.02; 1024 paths each from ``w*``, ``Cov(w)`` averaged over
    ``t ∈ [6, 36]`` (6 ≫ the relaxation time ``1/(2 λ_min(H))``). References, exact for this
    model (:func:`gradflow.testing.linreg_stationary_covariance`, the noise ``Σ(w)`` is
    quadratic in ``w``): the SDE's continuous Lyapunov equation ``H C + C H = η E Σ(w)`` for
    the SDE's solvers, SGD's discrete one ``C = (I − ηH) C (I − ηH) + η² E Σ(w)`` for
    ``gf.sgd``. Every entry ``i ≤ j`` within 3 Monte-Carlo standard errors (from the spread of
    the per-path averages). Euler–Maruyama's own bias at its default step η/4 is known exactly
    (its chain's equation): it must stay below one standard error (0.75 on ``C_00``), so the
    test is about the SDE. Power (measured with these paths and keys): the removed
    ``"euler-adaptive"`` (≈ 10 % too large) fails it at max |z| = 26, an SDE with B = 3
    instead of 2 at max |z| = 77.

    Also: ``gf.sgd``'s ``"without-replacement"`` (epoch reshuffling) has far less noise than
    the SDE with ``c = (N−B)/(B(N−1))``: its batches within an epoch are anticorrelated.
    """
    p, x, y, wstar = _linreg(16, [0.8, 0.5, 0.3])
    n, eta, b = 16, 0.02, 2
    c = 1 / b
    exact_sde, w_ls = linreg_stationary_covariance(x, y, eta, c)
    exact_sgd, _ = linreg_stationary_covariance(x, y, eta, c, step=eta)
    exact_em, _ = linreg_stationary_covariance(x, y, eta, c, step=eta / 4)
    np.testing.assert_allclose(w_ls, wstar, rtol=1e-12)
    kw = dict(t1=36.0, save_every=0.5, seeds=1024, observables=(FIRST_W,))
    runs = {
        "sgd": (
            gf.sgd(
                p, lr=eta, batch_size=b, sampling="with-replacement", key=jax.random.key(1), **kw
            ),
            exact_sgd,
        )
    }
    assert SDE_SOLVERS_TESTED == gf.dynamics.SDE_SOLVERS  # a new public solver gets tested here
    for i, solver in enumerate(SDE_SOLVERS_TESTED):
        noise = SGDNoise(eta, b, "with-replacement")
        tr = gf.flow(p, noise=noise, solver=solver, key=jax.random.key(2 + i), **kw)
        runs[f"sde {solver}"] = (tr, exact_sde)
    report = [f"\nλ(H) = {np.linalg.eigvalsh(2 * x.T @ x / n).round(3)}"]
    for name, (tr, exact) in runs.items():
        cov, z = _stationary_z(tr, exact, wstar)
        report.append(
            f"{name}: tr Ĉ / tr C = {np.trace(cov) / np.trace(exact):.4f}, "
            f"z(i ≤ j) = {np.round(z, 2).tolist()}"
        )
        assert np.all(np.abs(z) <= 3), (name, z)
    # the solvers' own bias at dt = η/4 is small against the standard error
    _, z_em = _stationary_z(runs["sde euler"][0], exact_em, wstar)
    _, z_sde = _stationary_z(runs["sde euler"][0], exact_sde, wstar)
    report.append(f"Euler–Maruyama's bias at dt = η/4 in SE: {np.round(z_sde - z_em, 2).tolist()}")
    assert np.all(np.abs(z_sde - z_em) < 1.0)
    # epoch reshuffling: much less noise than the independent-batch SDE
    rr = gf.sgd(p, lr=eta, batch_size=b, key=jax.random.key(3), **{**kw, "seeds": 128, "t1": 21.0})
    dw = rr["w"][:, rr.t >= 6.0, :] - wstar
    lyap = linreg_stationary_covariance(x, y, eta, (n - b) / (b * (n - 1)))[0]
    ratio = np.trace(np.einsum("sti,stj->ij", dw, dw) / dw.shape[0] / dw.shape[1]) / np.trace(lyap)
    report.append(f"epoch-reshuffled SGD: tr Cov / tr Lyapunov(c_without) = {ratio:.3f}")
    print("\n".join(report))
    assert ratio < 0.5


def _wls_slope(eta, value, se):
    """Slope of ``log|value|`` against ``log η``, weighted by ``|value|/se``, and its error."""
    yv, w = np.log(np.abs(value)), np.abs(value) / se
    a = np.stack([np.log(eta), np.ones_like(eta)], 1) * w[:, None]
    coef, *_ = np.linalg.lstsq(a, yv * w, rcond=None)
    cov = np.linalg.inv(a.T @ a)
    return coef[0], np.sqrt(cov[0, 0])


def test_weak_error_against_sgd_is_first_order_in_eta():
    """``|E_SGD − E_SDE|`` of the loss at ``t = 0.5`` falls like η; so does ``ΔVar/Var``.

    Linear regression (N = 8, B = 2, with replacement) from ``w* + offset``, 65536 seeds per
    run, ``η ∈ {0.1, 0.05, 0.025, 0.0125}``, SDE step ``η/4`` (the default: its own weak error
    ``O(η/4)`` is part of the measured ``O(η)``). ``Var[loss] = O(η)``, so the weak order 1
    shows as ``ΔVar/Var = O(η)`` (``ΔVar = O(η²)``). The mean's error is fitted on the three
    smallest η (at η = 0.1 the ``O(η²)`` terms still compete); each of those differences is
    ≥ 3 standard errors. The slopes are weighted least squares (weights signal/noise), and
    their own standard errors must be small (≤ 0.15) for the test to mean something.
    """
    p, *_ = _linreg(8, [1.0, 0.5, 0.25], offset=np.array([0.8, -0.8, 0.8]))
    etas = np.array([0.1, 0.05, 0.025, 0.0125])
    seeds, ts = 65536, [0.0, 0.5]  # t = 0.5 is step 5, 10, 20, 40 of SGD: on every grid
    rows = []
    for eta in etas:
        sgd = gf.sgd(
            p,
            lr=float(eta),
            batch_size=2,
            sampling="with-replacement",
            ts=ts,
            t1=0.5,
            key=jax.random.key(1),
            seeds=seeds,
        )
        sde = gf.flow(
            p,
            noise=SGDNoise(float(eta), 2, "with-replacement"),
            t1=0.5,
            ts=ts,
            key=jax.random.key(2),
            seeds=seeds,
            dt0=float(eta) / 4,
        )
        a, b = sgd["data_loss"][:, -1], sde["data_loss"][:, -1]
        dm = a.mean() - b.mean()
        sem = np.sqrt((a.var() + b.var()) / seeds)
        rv = a.var() / b.var() - 1
        # delta method: Var(s²) ≈ (m4 − s⁴)/S for each ensemble
        va = np.mean((a - a.mean()) ** 4) - a.var() ** 2
        vb = np.mean((b - b.mean()) ** 4) - b.var() ** 2
        se_rv = (
            (a.var() / b.var()) * np.sqrt(va / a.var() ** 2 + vb / b.var() ** 2) / np.sqrt(seeds)
        )
        rows.append((dm, sem, rv, se_rv))
    dm, sem, rv, se_rv = map(np.array, zip(*rows, strict=True))
    slope_m, err_m = _wls_slope(etas[1:], dm[1:], sem[1:])
    slope_v, err_v = _wls_slope(etas, rv, se_rv)
    print("\nη      E_SGD−E_SDE (se)        Var_SGD/Var_SDE−1 (se)")
    for row in zip(etas, dm, sem, rv, se_rv, strict=True):
        print("{:<6} {:+.5f} ({:.5f})   {:+.4f} ({:.4f})".format(*row))
    print(
        f"slopes: mean {slope_m:.3f} ± {err_m:.3f}, relative variance {slope_v:.3f} ± {err_v:.3f}"
    )
    assert np.all(np.abs(dm[1:]) > 3 * sem[1:])
    assert err_m <= 0.15 and err_v <= 0.15
    assert abs(slope_m - 1) <= 0.3 and abs(slope_v - 1) <= 0.3


# ---- statistics: a ReLU network with LM-last and weight decay ------------------------------


def test_relu_lm_last_sde_matches_sgd_in_distribution():
    """Mean and std over seeds of data loss, ρ and the min margin agree within 3 SE.

    A 2-layer ReLU MLP (init scale 0.5), LM-last, λ = 0.01, N = 32, B = 4 with replacement,
    η = 0.02, 256 seeds each, at t = 2, 5, 10 (SDE step η/4). The test has power: an SDE
    with B = 3 instead of 4 (noise 15% larger) fails it by several standard errors.
    """
    data = gf.data.load("gaussian-mixture", n_train=32, n_test=0, dim=5, seed=0, separation=1.5)
    net = MLP(5, (8,), 1, init_scale=0.5, key=jax.random.PRNGKey(0))
    p = gf.Problem(net, data, weight_decay=0.01, normalization="lm-last")
    ds = sde_vs_sgd(
        p,
        lr=0.02,
        batch_size=4,
        t1=10.0,
        ts=[0.0, 2.0, 5.0, 10.0],
        seeds=256,
        key=jax.random.key(0),
    )
    assert ds["rho"].dims == ("dynamics", "seed", "t")
    assert list(ds["dynamics"].values) == ["sde", "sgd"]
    summary = ensemble_summary(ds)
    print(
        "\nobservable  t     SDE mean ± se        SGD mean ± se        SDE std   SGD std   "
        "z_mean z_std"
    )
    worst = 0.0
    for name in ("data_loss", "rho", "margin_min"):
        for i in (1, 2, 3):
            s = {k: summary[f"{name}_{k}"].values[..., i] for k in ("mean", "sem", "std")}
            zm, zs = summary[f"{name}_z_mean"].values[i], summary[f"{name}_z_std"].values[i]
            print(
                f"{name:<10} {ds.t.values[i]:<5} {s['mean'][0]:.5f} ± {s['sem'][0]:.5f}  "
                f"{s['mean'][1]:.5f} ± {s['sem'][1]:.5f}  {s['std'][0]:.5f}  {s['std'][1]:.5f}"
                f"  {zm:+.2f}  {zs:+.2f}"
            )
            worst = max(worst, abs(zm), abs(zs))
    assert worst < 3.0


def test_a_sweep_over_weight_decay_is_one_batched_call_equal_to_the_direct_calls():
    """``gf.dynamics.plan`` of the SDE (a sweep's path): two λ share one signature, so
    ``run_plans`` runs them as ONE vmapped compiled call, and each point equals its direct
    (segmented) call to 1e-12."""
    noise, key = SGDNoise(0.05, 4, "with-replacement"), jax.random.PRNGKey(5)
    kw = dict(t1=0.5, save_every=0.25, noise=noise, key=key, seeds=2)
    problems = [_small_problem("lm-last", lam=lam) for lam in (0.01, 0.3)]
    plans = [plan(gf.flow, p, **kw) for p in problems]
    assert groups_of(plans) == [[0, 1]]  # one group: one compiled, vmapped call
    batched = run_plans(plans)
    for p, got in zip(problems, batched, strict=True):
        want = gf.flow(p, **kw)
        assert got.kind == "sde" and got.stats["status"] == "success"
        np.testing.assert_array_equal(got.t, want.t)
        for name in ("loss", "rho"):
            np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=0)
    # the two points differ: the check can fail
    assert not np.allclose(batched[0]["loss"], batched[1]["loss"], rtol=1e-6)


def test_fixed_step_segments_end_exactly_at_save_times_on_step_boundaries():
    """t1 = 0.3 in 12 fixed steps: the save times 0.1, 0.2 are 4 and 8 steps, though the
    float step 0.3 / 12 times 4 rounds below 0.1; the segments end exactly at them (one segment
    per save interval, so the run can be checkpointed), not one ulp before."""
    from gradflow.dynamics._sde import _segment_bounds

    grid = np.array([0.0, 0.1, 0.2, 0.3])
    a, b = _segment_bounds(grid, 0.0, 0.3, 0.3 / 12, adaptive=False)
    assert a.tolist() == [0.0, 0.1, 0.2] and b.tolist() == [0.1, 0.2, 0.3]


def test_integer_times_are_times():
    """t0=0, t1=1 given as integers: the SDE runs in the float times they name (a save
    every 0.5 is t = 0, 0.5, 1), not in integer times."""
    tr = gf.flow(
        _small_problem(), t0=0, t1=1, noise=SGDNoise(0.1, 2), key=jax.random.key(0), save_every=0.5
    )
    assert tr.t.tolist() == pytest.approx([0.0, 0.5, 1.0], rel=1e-12, abs=0)
    assert np.all(np.isfinite(tr["loss"]))
