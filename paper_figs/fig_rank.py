"""Figure rank: numerical rank of the hidden layer vs batch size, step and λ, with THEORY 4.6.

Prediction [paper; the bound's derivation is exact]: under SGD with λ > 0 the rank of
W_k/||W_k||_F (singular values above 1e-3) falls as B falls, as η rises and as λ rises; with
λ = 0 there is no such bias. Bound: rank ≤ B·k, k = ⌈ln(C/(cε))/(ηλ)⌉ (``gf.predict.rank_bound``,
ε = 1e-3, C/c the measured ratio of the largest to the smallest ||W_k||_F along the run), capped
by the size. Reads ``rank.toml``'s cached SGD runs through the sweep engine: one point per λ,
each point's runs over B (and, at the paper profile, over η).

At the paper profile a second dataset, ``rank_mnist1d.toml`` (all 4,000 MNIST-1D training
samples, ten classes, a 40-256-256-10 MLP, B ∈ {4, 32, 256}, λ ∈ {0, 1e-3, 3e-3, 1e-2}), is
swept the same way; the verdict gives its ranks with the final train accuracy.

Exact check [THEORY 4.6, exact]: at an SGD fixed point with λ > 0, ``λ W_k = −∇_{W_k} L_B`` is a
sum of B rank-one terms, so ``rank(W_k) ≤ B``. A fixed point of SGD with B < N would have to be
stationary for every batch at once (THEORY 4.7: with λ > 0 there is none), so the one that
exists is B = N: SGD with B = N (every step the full batch, i.e. gradient descent) on N = B
samples, run until it stops moving. The figure records, per such point, the relative velocity
``||∇L + λW|| / ||λW||`` at the end (how close to a fixed point) and ``σ_{B+1}/σ_1`` of every
layer wider than B (``rank_fixed.json`` in the point's cache folder).
"""

from __future__ import annotations

import numpy as np

from paper_figs import _common, _verdict

NAME = "rank"
LAYER = 1  # the hidden-to-hidden matrix
LR = 0.1  # the scenario's step; the B and λ criterion is read at it
FIXED = "rank_fixed.json"
MNIST1D_DECAYS = (0.0, 1e-3, 3e-3, 1e-2)  # the low-rank protocol's range
MNIST1D_SEEDS = 3  # seeds of the batch order (one vmapped ensemble per run)
FIXED_DECAY = 0.05
AVERAGE = 1000  # GD steps over which the fixed-point check averages the velocity


def _decays(profile: str):
    if profile == "paper":  # the low-rank protocol's range (Galanti et al.: 1e-4 .. 1e-2) and up
        return (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.05)
    return (0.0, 0.05) if profile == "fast" else (0.0, 0.01, 0.05)


def _steps(profile: str):
    return (0.05, LR, 0.2) if profile == "paper" else (LR,)


def _fixed_sizes(profile: str):
    return (4,) if profile == "fast" else (4, 16)


def _fixed_sets(n: int) -> dict:
    return {
        "data.n_train": n,
        "sgd.batch_size": n,
        "sgd.lr": LR,
        "problem.weight_decay": FIXED_DECAY,
        "sgd.t1": 600.0,
        "sgd.save_every": 60.0,
    }


def compute(profile, log=print) -> dict:
    """The results this figure reads, at ``profile`` (fast | full | paper): keys λ (the sweep)
    and ``("fixed", N)`` (the fixed-point check on N = B samples)."""
    profile = _common.profile_of(profile)
    lrs = list(_steps(profile))
    points = {
        lam: {"problem.weight_decay": lam, **({"sgd.lr": lrs} if len(lrs) > 1 else {})}
        for lam in _decays(profile)
    }
    points.update({("fixed", n): _fixed_sets(n) for n in _fixed_sizes(profile)})
    # the companion's protocol, fixed epochs: every B makes E epochs (E·N/B steps), so the
    # larger B run for a shorter flow time; the smallest B's runs are the sweep's own
    table = _common._config("rank", profile, {}).table["sgd"]
    batches, t1 = sorted(table["batch_size"]), float(table["t1"])
    for lam in _decays(profile):
        for b in batches[1:]:
            t_b = t1 * batches[0] / b
            points[("epochs", lam, b)] = {
                "problem.weight_decay": lam,
                "sgd.batch_size": b,
                "sgd.lr": LR,
                "sgd.t1": t_b,
                "sgd.save_every": t_b / 10,
            }
    results = _common.sweep("rank", profile, points, log=log)
    if profile == "paper":  # the second dataset: rank_mnist1d.toml, as written
        mnist = {
            ("mnist1d", lam): {"problem.weight_decay": lam, "sgd.seeds": MNIST1D_SEEDS}
            for lam in MNIST1D_DECAYS
        }
        results.update(_common.sweep("rank_mnist1d", "full", mnist, log=log))
    for key, res in results.items():
        if isinstance(key, tuple) and key[0] == "fixed":
            _fixed_record(profile, key[1], res, log)
    return results


def _fixed_record(profile, n: int, res, log) -> dict:
    """Singular values, and how stationary the end of the B = N run is (cached): the relative
    velocity ``||∇L + λW|| / ||λW||`` at the end, and its mean over ``AVERAGE`` further GD steps,
    ``||W_(T+m) − W_T|| / (mη ||λW||)`` (≈ 0 at a fixed point, also at one where GD chatters
    across a ReLU switching surface: a Filippov equilibrium)."""

    def compute_record() -> dict:
        import jax

        problem = _common.problem("rank", profile, _fixed_sets(n))
        (traj,) = res.runs().values()
        weights = tuple(np.asarray(w) for w in traj.final_params)
        state = problem.to_state(weights)
        decay = np.linalg.norm(FIXED_DECAY * _flat(state))

        @jax.jit
        def steps(state):
            def step(_, s):
                return jax.tree.map(lambda w, v: w + LR * v, s, problem.velocity(s))

            return jax.lax.fori_loop(0, AVERAGE, step, state)

        moved = _flat(steps(state)) - _flat(state)
        layers = []
        for k, w in enumerate(weights):
            s = np.linalg.svd(w, compute_uv=False)
            tail = float(s[n] / s[0]) if s.size > n else None
            layers.append({"layer": k, "shape": list(w.shape), "sigma": s.tolist(), "tail": tail})
        record = {
            "n": n,
            "relative_velocity": float(np.linalg.norm(_flat(problem.velocity(state))) / decay),
            "mean_relative_velocity": float(np.linalg.norm(moved) / (AVERAGE * LR * decay)),
            "average_steps": AVERAGE,
            "held_at_zero": _common.held_at_zero(problem, state, rel=1e-3),
            "layers": layers,
            "t1": float(traj.t[-1]),
        }
        log(
            f"  rank fixed point N = B = {n}: relative velocity {record['relative_velocity']:.1e} "
            f"(mean over {AVERAGE} steps {record['mean_relative_velocity']:.1e}), "
            f"max σ_(B+1)/σ_1 {_tail(record):.1e}"
        )
        return record

    return _common.json_record(res, FIXED, compute_record)


#: THEORY 4.6's claim: near-interpolating solutions (train accuracy ≥ 0.99).
FITS = 0.99
RANK_HYPOTHESES = _verdict.Hypotheses(min_train_acc=FITS)


def _horizon(results: dict) -> float:
    return float(next(iter(next(iter(results.values())).runs().values())).t[-1])


def _rank_regime(results: dict, b: int, lam: float, lr: float):
    """The regime of the run with batch size ``b`` and step ``lr`` at the point ``lam``: train
    accuracy (worst seed), ηλ·steps, the number of classes (a binary task is outside)."""
    key = lam if lam in results else ("mnist1d", lam)
    for traj in results[key].runs().values():
        if int(traj.config["batch_size"]) == b and float(traj.config["lr"]) == lr:
            outputs = int(np.shape(traj.final_params[-1])[-2])
            classes = outputs if outputs > 1 else 2
            steps = int(round(float(traj.t[-1]) / lr))
            return _verdict.run_regime(
                traj,
                f"B={b} λ={lam:g}",
                eps=None,
                extra=(("steps", steps), ("classes", classes)),
                outside=("2 classes: the layers' rank is capped by the task's",)
                if classes == 2
                else (),
            )
    raise KeyError((b, lam, lr))


def _flat(tree) -> np.ndarray:
    from jax.flatten_util import ravel_pytree

    return np.asarray(ravel_pytree(tree)[0])


def _tail(record) -> float:
    return max(x["tail"] for x in record["layers"] if x["tail"] is not None)


def _lower(a: float, b: float) -> bool:
    """``a`` is a lower rank than ``b`` beyond SGD's jitter of a singular value across the
    tolerance: by more than 1 and by more than 5%."""
    return a < b - max(1.0, 0.05 * b)


def _ranks(results: dict, ax=None) -> tuple[dict, dict, dict, int, dict]:
    """(B, λ, η) -> final rank (the mean over seeds for an ensemble), bound (λ > 0), final
    train accuracy, the full rank, and (B, λ, η) -> the final rank of each seed."""
    from gradflow.predict import rank_bound

    measured, bounds, acc, full, seeds = {}, {}, {}, None, {}
    for lam, res in sorted(results.items()):
        for traj in res.runs().values():
            b, lr = int(traj.config["batch_size"]), float(traj.config["lr"])
            rank = np.atleast_2d(np.asarray(traj["rank"])[..., LAYER])  # (seed, time)
            rho = np.asarray(traj["rho_k"])[..., LAYER]
            full = min(np.shape(traj.final_params[LAYER])[-2:])
            seeds[(b, lam, lr)] = rank[:, -1].astype(float)
            measured[(b, lam, lr)] = float(rank[:, -1].mean())
            acc[(b, lam, lr)] = float(np.mean(np.atleast_2d(np.asarray(traj["train_acc"]))[:, -1]))
            if lam > 0:
                _, bnd = rank_bound(b, lr, lam, 1e-3, float(np.nanmax(rho) / np.nanmin(rho)))
                bounds[(b, lam, lr)] = float(min(float(bnd), full))
            if ax is not None and lam == max(results) and lr == LR:
                ax.plot(traj.t, rank.mean(axis=0), label=f"SGD B = {b}")
    return measured, bounds, acc, full, seeds


def _about(results: dict) -> str:
    """N, classes and layer widths of a sweep's problem, read from its first run."""
    traj = next(iter(next(iter(results.values())).runs().values()))
    shapes = traj.config["problem"]["layer_shapes"]
    widths = "-".join(str(d) for d in [shapes[0][1], *(rows for rows, _ in shapes)])
    return f"N={traj.config['problem']['n_train']}, {shapes[-1][0]} classes, {widths}"


def _versus_b(ax, measured, bounds, title) -> None:
    batches = sorted({b for b, _, _ in measured})
    for lam in sorted({lam for _, lam, _ in measured}):
        (line,) = ax.plot(
            batches, [measured[(b, lam, LR)] for b in batches], "o-", label=f"λ = {lam:g}"
        )
        if bounds and lam > 0:
            ax.plot(batches, [bounds[(b, lam, LR)] for b in batches], ":", color=line.get_color())
    ax.set(
        xscale="log",
        xlabel="batch size B (log)",
        ylabel=f"final numerical rank of W_{LAYER + 1} (tol 1e-3)",
        title=title,
    )
    _ticks_at(ax, batches)


def _ticks_at(ax, values) -> None:
    """x ticks at ``values`` only, written plainly (a log axis's minor labels overlap)."""
    from matplotlib.ticker import NullLocator

    ax.set_xticks(list(values), [f"{v:g}" for v in values])
    ax.xaxis.set_minor_locator(NullLocator())


#: The end's relative velocity ``||∇L + λW|| / ||λW||`` below which the B = N run is taken as
#: GD's fixed point. GD's fixed points are the zeros of the velocity itself (a step moves by η
#: times it), so its value at the end — not a mean over further steps, which a run circling a
#: switching surface also makes small — is the criterion. It is also the exact check's margin:
#: ``λ W_k = −∇_{W_k} L_B + v_k`` with ``∇_{W_k} L_B`` of rank ≤ B, so by Weyl's inequality
#: ``σ_(B+1)(W_k) ≤ ||v_k||_F / λ``, and ``σ_(B+1)/||W|| ≤`` the relative velocity.
STATIONARY = 1e-6


def _fixed_point_check(fixed: dict) -> str:
    """THEORY 4.6's exact check, rank ≤ B at GD's fixed point (B = N), judged only where the
    run's end is one (:data:`STATIONARY`); otherwise outside the claim's hypotheses, with the
    numbers."""
    stationary = all(r["relative_velocity"] <= STATIONARY for r in fixed.values())
    exact = all(_tail(r) < 1e-6 for r in fixed.values())
    text = (
        f"exact bound rank ≤ B at the SGD fixed point (B = N, λ={FIXED_DECAY:g}, η={LR:g}): "
        + ", ".join(
            f"N=B={n}: max σ_(B+1)/σ_1 {_tail(r):.1e}, relative velocity "
            f"{r['relative_velocity']:.1e} at the end (mean over {r['average_steps']} further "
            f"steps {r['mean_relative_velocity']:.1e}; {r['held_at_zero']} pre-activations "
            "within 1e-3 of 0)"
            for n, r in sorted(fixed.items())
        )
    )
    if not stationary:
        worst = max(r["relative_velocity"] for r in fixed.values())
        return (
            f"{text}: {_verdict.OUTSIDE} (not a fixed point: relative velocity at the end "
            f"{worst:.1e} > {STATIONARY:g})"
        )
    return f"{text}: " + (_verdict.BORNE_OUT if exact else _verdict.NOT_BORNE_OUT)


def draw(inputs: dict, out_dir) -> str:
    import matplotlib.pyplot as plt

    def part(kind):
        return {k[1]: r for k, r in inputs.items() if isinstance(k, tuple) and k[0] == kind}

    epochs = {k[1:]: r for k, r in inputs.items() if isinstance(k, tuple) and k[0] == "epochs"}

    fixed = {n: _common.read_json(r, FIXED) for n, r in part("fixed").items()}
    mnist = part("mnist1d")
    sweep = {k: r for k, r in inputs.items() if not isinstance(k, tuple)}
    lrs = sorted({float(t.config["lr"]) for r in sweep.values() for t in r.runs().values()})
    ncols = 3 + (len(lrs) > 1) + bool(mnist)
    fig, axes = plt.subplots(1, ncols, figsize=(4.4 * ncols, 3.9))
    ax0, ax1, ax2 = axes[:3]
    measured, bounds, _, full, _ = _ranks(sweep, ax0)
    batches = sorted({b for b, _, _ in measured})
    lams = sorted(sweep)
    _versus_b(ax1, measured, bounds, f"η = {LR:g}; dotted: THEORY 4.6 bound (capped at full rank)")
    for n, rec in sorted(fixed.items()):
        for layer in rec["layers"]:
            if layer["tail"] is not None:
                sv = np.asarray(layer["sigma"])
                ax2.semilogy(
                    np.arange(1, sv.size + 1),
                    sv / sv[0],
                    ".",
                    ms=3,
                    label=f"N = B = {n}, layer W_{layer['layer'] + 1}",
                )
    ax2.set(
        xlabel="singular value index i",
        ylabel="σ_i / σ_1 (log)",
        title=f"SGD fixed point (B = N, λ = {FIXED_DECAY:g}): rank ≤ B",
    )
    if len(lrs) > 1:
        for lam in lams:
            axes[3].plot(
                lrs, [measured[(batches[0], lam, lr)] for lr in lrs], "o-", label=f"λ = {lam:g}"
            )
        axes[3].set(
            xscale="log",
            xlabel="SGD step size η (log)",
            ylabel=f"final numerical rank of W_{LAYER + 1}",
            title=f"B = {batches[0]}",
        )
        _ticks_at(axes[3], lrs)
    if mnist:
        m_measured, _, m_acc, m_full, m_seeds = _ranks(mnist)
        about = _about(mnist)
        _versus_b(axes[-1], m_measured, {}, f"MNIST-1D, {about}, η = {LR:g}")
    ax0.set(
        xlabel="flow time t = η·step",
        ylabel=f"numerical rank of W_{LAYER + 1} (tol 1e-3)",
        title=f"λ = {max(sweep):g}, η = {LR:g}",
    )
    for ax in axes:
        ax.legend(fontsize=6)
        ax.title.set_fontsize(8)
    fig.suptitle("Low rank under SGD + weight decay (THEORY 4.6)", fontsize=9)

    lam_max, b_min, b_max = max(lams), batches[0], batches[-1]
    ok = _lower(measured[(b_min, lam_max, LR)], measured[(b_max, lam_max, LR)]) and _lower(
        measured[(b_min, lam_max, LR)], measured[(b_min, 0.0, LR)]
    )
    vacuous = all(v >= full for v in bounds.values())
    positive = [lam for lam in lams if lam > 0]
    # informative: the λ > 0 at which the smallest B ends at a lower rank than the largest
    matters = [
        lam for lam in positive if _lower(measured[(b_min, lam, LR)], measured[(b_max, lam, LR)])
    ]
    table = ", ".join(
        f"B={b} λ={lam:g}: {measured[(b, lam, LR)]:.0f}" for b in batches for lam in lams
    )
    text = (
        f"{NAME}: predicted rank(W_{LAYER + 1}) falls with smaller B, larger η and larger λ, no "
        f"bias at λ=0; measured final rank (of {full}) at η={LR:g}: {table}; THEORY 4.6 bound "
        + (
            "vacuous (≥ full rank) at every point"
            if vacuous
            else ", ".join(f"{v:.0f}" for v in bounds.values())
        )
        + f"; B={b_min} below B={b_max} at λ ∈ "
        + ("{" + ", ".join(f"{lam:g}" for lam in matters) + "}" if matters else "∅")
        + f" (of {len(positive)} λ > 0)"
    )
    if len(lrs) > 1:
        by_lr = "; ".join(
            f"λ={lam:g}: " + "/".join(f"{measured[(b_min, lam, lr)]:.0f}" for lr in lrs)
            for lam in lams
        )
        lower = [
            lam
            for lam in positive
            if _lower(measured[(b_min, lam, lrs[-1])], measured[(b_min, lam, lrs[0])])
        ]
        text += (
            f"; at B={b_min}, rank for η = {'/'.join(f'{lr:g}' for lr in lrs)}: {by_lr} "
            f"(η={lrs[-1]:g} below η={lrs[0]:g} at λ ∈ "
            + ("{" + ", ".join(f"{lam:g}" for lam in lower) + "}" if lower else "∅")
            + ")"
        )
    text += "; " + _fixed_point_check(fixed)
    # the claim concerns near-interpolating solutions (train accuracy ≥ FITS) of a task with
    # more than two classes (a binary net's layers collapse to the task's own rank, 2, which
    # hides the batch size); the protocol here is fixed ηλ·steps (every B runs to the same
    # flow time t = η·steps), reported per point
    judged = [(b, lam) for b in (b_min, b_max) for lam in (0.0, lam_max)]
    points = [_rank_regime(sweep, b, lam, LR) for b, lam in judged]
    text += (
        f"; protocol: fixed ηλ·steps (every B to t={_horizon(sweep):g}); "
        + _verdict.regime_text(points, RANK_HYPOTHESES)
    )
    status = "fixed ηλ·steps: " + _verdict.judge(ok, points, RANK_HYPOTHESES)
    if epochs:
        # fixed epochs: B_max made E epochs in t·B_min/B_max of flow time (less exposure)
        e_points, e_rank = [], {}
        for b, lam in [(b_min, 0.0), (b_min, lam_max), (b_max, 0.0), (b_max, lam_max)]:
            res = {lam: sweep[lam]} if b == b_min else {lam: epochs[(lam, b)]}
            e_points.append(_rank_regime(res, b, lam, LR))
            (traj,) = [tr for tr in res[lam].runs().values() if int(tr.config["batch_size"]) == b]
            e_rank[(b, lam)] = float(
                np.mean(np.atleast_2d(np.asarray(traj["rank"])[..., LAYER])[:, -1])
            )
        e_ok = _lower(e_rank[(b_min, lam_max)], e_rank[(b_max, lam_max)]) and _lower(
            e_rank[(b_min, lam_max)], e_rank[(b_min, 0.0)]
        )
        text += (
            f"; fixed epochs (the companion's protocol: B={b_max} runs to "
            f"t={_horizon(sweep) * b_min / b_max:g}): final rank "
            + ", ".join(f"B={b} λ={lam:g}: {v:.0f}" for (b, lam), v in e_rank.items())
            + "; "
            + _verdict.regime_text(e_points, RANK_HYPOTHESES)
        )
        status += "; fixed epochs: " + _verdict.judge(e_ok, e_points, RANK_HYPOTHESES)
    if mnist:
        mb = sorted({b for b, _, _ in m_measured})
        mlams = sorted(mnist)
        ci = {k: _common.interval(v) for k, v in m_seeds.items()}
        n_seeds = max(len(v) for v in m_seeds.values())

        def separated(lam) -> bool:
            """B_min's rank below B_max's beyond the jitter, and their 95% intervals apart."""
            (lo, h_lo), (hi, h_hi) = ci[(mb[0], lam, LR)], ci[(mb[-1], lam, LR)]
            return _lower(lo, hi) and hi - lo > h_lo + h_hi

        m_ok = separated(mlams[-1]) and _lower(
            m_measured[(mb[0], mlams[-1], LR)], m_measured[(mb[0], 0.0, LR)]
        )
        m_matters = [lam for lam in mlams[1:] if separated(lam)]
        text += (
            f"; MNIST-1D ({about}, η={LR:g}, {n_seeds} seed(s) of the "
            f"batch order): final rank (of {m_full}; mean ± 95% CI, train accuracy) "
            + ", ".join(
                f"B={b} λ={lam:g}: {ci[(b, lam, LR)][0]:.1f} ± {ci[(b, lam, LR)][1]:.1f} "
                f"({m_acc[(b, lam, LR)]:.2f})"
                for b in mb
                for lam in mlams
            )
            + f"; B={mb[0]} below B={mb[-1]} (intervals apart) at λ ∈ "
            + ("{" + ", ".join(f"{lam:g}" for lam in m_matters) + "}" if m_matters else "∅")
        )
        m_points = [_rank_regime(mnist, b, lam, LR) for b in (mb[0], mb[-1]) for lam in mlams]
        text += "; MNIST-1D " + _verdict.regime_text(m_points, RANK_HYPOTHESES)
        status += " (digits); MNIST-1D: " + _verdict.judge(m_ok, m_points, RANK_HYPOTHESES)
    return _common.finish(fig, out_dir, NAME, f"{text}: {status}")
