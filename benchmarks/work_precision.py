"""Work-precision benchmark of ``gf.flow``'s ODE solvers on non-smooth ReLU gradient flows.

Run::

    python benchmarks/work_precision.py [--fast] [--out benchmarks/results/work_precision.json]

What it measures (see benchmarks/README.md, section "Work-precision (ODE solvers)"):

1. **Work precision** on a 3-layer bias-free ReLU MLP (32-64-64-1, 6,208 parameters, 512
   Gaussian-mixture samples, float64, weight decay 1e-3), normalization ``"none"`` on
   t in [0, 5] and ``"lm-last"`` on t in [0, 0.5] (the lm-last flow runs about ten times faster
   in t: over [0, 0.5] its data loss falls from 5.1 to 2e-3, as the plain flow's falls from
   5.1 to 0.12 over [0, 5]). For every method and setting: the relative L2 error at t1 of the
   concatenated final layer weights, and the relative error of the final data loss, against
   a converged reference; the gradient evaluations (steps x new stages per step, FSAL counted
   honestly) and the wall seconds of a call whose compilation was done by an earlier call.
   Methods: explicit Euler (gradient descent) and fixed-step Heun on a dt ladder; adaptive
   Heun, Bosh3 and Tsit5 at rtol 1e-3..1e-8 (atol = rtol * 1e-2), each without a step floor
   and with ``dtmin`` in {1e-2, 1e-3, 1e-4}. The observed order is the log-log slope of error
   against gradient evaluations.
2. **The reference** is fixed-step Heun at two step sizes (h and 2h); the difference between
   the two is reported as the reference's own error, and errors within 3x of it are flagged.
   Reference runs are cached in ``results/work_precision_references.json`` under a fingerprint
   of the data, weights, settings, versions and integrator sources (``--recompute-reference``).
   Runs are capped (``throw=False``) and a tolerance ladder stops early where a
   tighter tolerance would only hit the cap again or repeat a fixed-step run at the floor.
3. **Sliding**: a tiny net (40 samples, two hidden layers of 7 units, t in [0, 10]) on which
   adaptive control without a floor crawls along a Filippov sliding surface.
4. **Acceptance case**: MLP 10-16-16-1, 96 samples, weight decay 1e-3, t1 = 400, lm-last and
   none, with the library's defaults (as a user calls ``gf.flow``) and with candidate defaults
   (including the first default, Heun rtol 1e-6 dtmin 1e-3, and floors relative to t1): seconds
   with and without compilation, steps, floor steps, and the error against a fine run.

Settings travel to the jitted integrator as NumPy float64 scalars (``rtol``, ``atol``,
``dtmin``, ``dt0``), which Equinox treats as traced arrays, so one compilation serves a whole
tolerance ladder; each (problem, method, floor-or-not) is compiled once by a short warm-up call
before anything is timed.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import inspect
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import diffrax  # noqa: E402
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import gradflow as gf  # noqa: E402
from gradflow.models import MLP  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: New right-hand-side (gradient) evaluations per step, and once at the start (FSAL): the
#: solver's own tableau (``gf.ODE(solver).evaluations_per_step``), plus fixed-step Heun.
EVALS = {
    name: gf.ODE(cls()).evaluations_per_step
    for name, cls in gf.SOLVERS.items()
    if gf.ODE(cls()).evaluations_per_step is not None
}
STAGES = {**EVALS, "heun-fixed": EVALS["heun"]}
ADAPTIVE = ("heun", "bosh3", "tsit5")
FLOORS = (None, 1e-2, 1e-3, 1e-4)
RTOLS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)


# ---------------------------------------------------------------------------------------
# problems
# ---------------------------------------------------------------------------------------
def make_problem(spec: dict) -> gf.Problem:
    data = gf.data.load(
        "gaussian-mixture", n_train=spec["n_train"], n_test=0, dim=spec["dim"], seed=spec["seed"]
    )
    net = MLP(spec["dim"], tuple(spec["widths"]), 1, key=jax.random.PRNGKey(spec["seed"]))
    return gf.Problem(
        net, data, weight_decay=spec["weight_decay"], normalization=spec["normalization"]
    )


def n_params(problem: gf.Problem) -> int:
    return int(sum(w.size for w in problem.model.weights))


def flat(weights) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(w)) for w in weights])


def data_loss(problem: gf.Problem, weights) -> float:
    return float(problem.data_loss(problem.to_state(tuple(weights))))


# ---------------------------------------------------------------------------------------
# floors: absolute, or relative to the horizon
# ---------------------------------------------------------------------------------------
def floor_value(dtmin, t1: float):
    """``None``, a number (absolute, in flow time), or ``"<c>T"`` meaning ``c * t1``."""
    if dtmin is None or isinstance(dtmin, (int, float)):
        return dtmin
    return float(dtmin[:-1]) * t1


def floor_name(dtmin) -> str:
    if dtmin is None:
        return "none"
    return dtmin.replace("T", "*T") if isinstance(dtmin, str) else f"{dtmin:g}"


# ---------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------
class Runner:
    """Runs ``gf.flow`` on one problem, compiling each signature once before timing.

    ``grid="ends"`` saves observables at ``t0`` and ``t1`` only; ``grid="default"`` uses
    ``gf.flow``'s default 101-point save grid (what a user gets).
    """

    def __init__(self, problem: gf.Problem, t1: float, max_evals: int, grid: str = "ends"):
        self.problem = problem
        self.t1 = float(t1)
        self.max_evals = int(max_evals)
        self.grid = grid
        self.compiled: set = set()

    def kwargs(self, method: str, rtol=None, atol=None, dtmin=None, dt=None, max_steps=None):
        per, _ = STAGES[method]
        kw = dict(
            max_steps=int(max_steps or max(self.max_evals // per, 1)), throw=False
        )
        if method == "euler":
            kw.update(solver="euler", dt0=np.float64(dt))
        elif method == "heun-fixed":
            kw.update(
                solver="heun", stepsize_controller=diffrax.ConstantStepSize(), dt0=np.float64(dt)
            )
        else:
            floor = floor_value(dtmin, self.t1)
            kw.update(
                solver=method,
                rtol=np.float64(rtol),
                atol=np.float64(atol),
                dtmin=None if floor is None else np.float64(floor),
            )
        return kw

    def call(self, kw, t1=None):
        t1 = self.t1 if t1 is None else t1
        grid = {"ts": [0.0, t1]} if self.grid == "ends" else {}
        start, cpu = time.perf_counter(), time.process_time()
        tr = gf.flow(self.problem, t1=t1, **grid, **kw)
        jax.block_until_ready(tr.final_state)
        return tr, time.perf_counter() - start, time.process_time() - cpu

    def run(
        self, method: str, *, rtol=None, atol=None, dtmin=None, dt=None, max_steps=None
    ) -> dict:
        kw = self.kwargs(method, rtol, atol, dtmin, dt, max_steps)
        sig = (method, kw.get("dtmin") is None, kw["max_steps"])
        compile_s = None
        if sig not in self.compiled:
            # Same static structure, a negligible horizon: compiles without integrating.
            _, compile_s, _ = self.call(kw, t1=self.t1 * 1e-6)
            self.compiled.add(sig)
        tr, seconds, cpu_seconds = self.call(kw)
        return record(
            self.problem,
            tr,
            method,
            rtol,
            atol,
            dtmin,
            dt,
            seconds,
            cpu_seconds,
            compile_s,
            floor_value(dtmin, self.t1),
        )


def record(
    problem, tr, method, rtol, atol, dtmin, dt, seconds, cpu_seconds, compile_s, dtmin_value
) -> dict:
    s = tr.stats
    per, first = STAGES[method]
    return {
        "method": method,
        "rtol": rtol,
        "atol": atol,
        "dtmin": dtmin,
        "dtmin_value": dtmin_value,
        "dt": dt,
        "num_steps": s["num_steps"],
        "num_rejected_steps": s["num_rejected_steps"],
        "num_floor_steps": s.get("num_floor_steps", 0),
        "num_floor_rejections": s.get("num_floor_rejections", 0),
        "grad_evals": per * s["num_steps"] + first,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "warmup_seconds": compile_s,
        "status": s["status"],
        "t_reached": s["t_reached"],
        "finished": s["status"] == "success",
        "final": flat(tr.final_params),
        "data_loss": data_loss(problem, tr.final_params),
    }


def add_errors(rec: dict, ref: dict) -> dict:
    if rec["finished"]:
        rec["err_params"] = float(
            np.linalg.norm(rec["final"] - ref["final"]) / np.linalg.norm(ref["final"])
        )
        rec["err_loss"] = float(abs(rec["data_loss"] - ref["data_loss"]) / abs(ref["data_loss"]))
    else:
        rec["err_params"] = rec["err_loss"] = None
    return rec


def public(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "final"}


def label(rec: dict) -> str:
    m = rec["method"]
    if m in ("euler", "heun-fixed"):
        return f"{m} dt={rec['dt']:g}"
    return f"{m} rtol={rec['rtol']:g} dtmin={floor_name(rec['dtmin'])}"


def log(msg: str) -> None:
    print(msg, flush=True)


def log_rec(rec: dict, prefix: str = "") -> None:
    if rec.get("skipped"):
        log(f"{prefix}{label(rec):34s} skipped: {rec['skipped']}")
        return
    err = rec.get("err_params")
    e = "   -    " if err is None else f"{err:8.2e}"
    extra = "" if rec["finished"] else f"  CAPPED at t={rec['t_reached']:.4g}"
    log(
        f"{prefix}{label(rec):34s} evals={rec['grad_evals']:8d} steps={rec['num_steps']:7d} "
        f"floor={rec['num_floor_steps']:6d} s={rec['seconds']:6.2f} err={e}{extra}"
    )


def skipped(method, rtol, dtmin, why: str) -> dict:
    return {
        "method": method,
        "rtol": rtol,
        "atol": rtol * 1e-2,
        "dtmin": dtmin,
        "dt": None,
        "finished": False,
        "skipped": why,
        "err_params": None,
        "err_loss": None,
    }


# ---------------------------------------------------------------------------------------
# the reference
# ---------------------------------------------------------------------------------------
REF_CACHE = HERE / "results" / "work_precision_references.json"
#: Sources whose change invalidates a cached reference (with the data, weights and versions):
#: these files, and the source text of ``gf.flow`` and of its integrator (not the values of
#: the default settings, which a fixed-step reference does not use).
REF_SOURCES = (
    "gradflow/diffrax_ext/_floor.py",
    "gradflow/diffrax_ext/_projection.py",
    "gradflow/dynamics/_core.py",
    "gradflow/_parametrization.py",
    "gradflow/_problem.py",
    "gradflow/_loss.py",
    "models/_mlp.py",
)


def fingerprint(problem: gf.Problem, t1: float, h: float) -> str:
    """A hash of everything a reference run depends on."""
    d = hashlib.sha256()
    for a in (problem.x_train, problem.y_train, *problem.model.weights):
        d.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    d.update(
        json.dumps(
            [
                problem.normalization,
                float(problem.weight_decay),
                t1,
                h,
                jax.__version__,
                diffrax.__version__,
            ]
        ).encode()
    )
    for src in REF_SOURCES:
        path = ROOT / src
        d.update(path.read_bytes() if path.exists() else b"")
    d.update(inspect.getsource(gf.dynamics.flow).encode())
    return d.hexdigest()[:20]


def reference(runner: Runner, h: float, recompute: bool = False) -> dict:
    """Fixed-step Heun at ``h`` (the reference) and ``2h`` (its error estimate).

    Cached in ``results/work_precision_references.json`` under a fingerprint of the data,
    the initial weights, the settings, the versions and the integrator's sources, since the
    fine runs take minutes; ``--recompute-reference`` recomputes them.
    """
    key = fingerprint(runner.problem, runner.t1, h)
    cache = json.loads(REF_CACHE.read_text()) if REF_CACHE.exists() else {}
    if not recompute and key in cache:
        c = cache[key]
        log(f"(reference from {REF_CACHE.name}, computed {c['date']})")
        return dict(c, final=np.asarray(c["final"]), cached=True)
    n = int(round(runner.t1 / h)) + 10
    fine = runner.run("heun-fixed", dt=h, max_steps=n)
    coarse = runner.run("heun-fixed", dt=2 * h, max_steps=n)
    assert fine["finished"] and coarse["finished"]
    fine["ref_err_params"] = float(
        np.linalg.norm(coarse["final"] - fine["final"]) / np.linalg.norm(fine["final"])
    )
    fine["ref_err_loss"] = float(
        abs(coarse["data_loss"] - fine["data_loss"]) / abs(fine["data_loss"])
    )
    fine["coarse"] = public(coarse)
    fine["date"] = datetime.date.today().isoformat()
    cache[key] = dict(public(fine), final=[float(x) for x in fine["final"]])
    REF_CACHE.parent.mkdir(parents=True, exist_ok=True)
    REF_CACHE.write_text(json.dumps(cache, default=_json_default))
    return dict(fine, cached=False)


# ---------------------------------------------------------------------------------------
# work precision on one problem
# ---------------------------------------------------------------------------------------
def fit_order(recs: list[dict], ref_err: float) -> dict | None:
    """Slope p of log(err) = c - p log(evals).

    Over finished runs whose error exceeds 3x the reference's own error and (adaptive) whose
    steps are less than half floor steps (a floor-bound run is a fixed-step run at the floor);
    ``None`` without 3 such points spanning at least 4x in work.
    """
    pts = [
        (r["grad_evals"], r["err_params"])
        for r in recs
        if r["finished"]
        and r["err_params"]
        and r["err_params"] > 3 * ref_err
        and r["num_floor_steps"] < 0.5 * r["num_steps"]
    ]
    if len(pts) < 3 or max(p[0] for p in pts) < 4 * min(p[0] for p in pts):
        return None  # fewer than 3 points, or less than a 4x span of work: no slope
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    slope, _ = np.polyfit(x, y, 1)
    return {
        "order": float(-slope),
        "n_points": len(pts),
        "evals_range": [int(min(p[0] for p in pts)), int(max(p[0] for p in pts))],
    }


def work_precision(name: str, spec: dict, plan: dict, recompute: bool = False) -> dict:
    problem = make_problem(spec)
    runner = Runner(problem, spec["t1"], plan["max_evals"])
    log(
        f"\n== {name}: {spec['normalization']}, {n_params(problem)} params, "
        f"{spec['n_train']} samples, t in [0, {spec['t1']}]"
    )
    ref = reference(runner, spec["ref_h"], recompute)
    ref_err = ref["ref_err_params"]
    log(
        f"reference heun-fixed dt={spec['ref_h']:g}: {ref['seconds']:.1f} s, "
        f"data_loss {ref['data_loss']:.10g}; vs dt={2 * spec['ref_h']:g}: rel err params "
        f"{ref_err:.2e}, data loss {ref['ref_err_loss']:.2e}"
    )
    recs = []
    for method in ("euler", "heun-fixed"):
        for dt in plan["dts"]:
            n = int(round(spec["t1"] / dt)) + 10
            rec = add_errors(runner.run(method, dt=dt, max_steps=n), ref)
            recs.append(rec)
            log_rec(rec)
    for method in plan["methods"]:
        for dtmin in plan["floors"]:
            why = None
            for rtol in plan["rtols"]:
                if why:
                    recs.append(skipped(method, rtol, dtmin, why))
                    continue
                rec = add_errors(runner.run(method, rtol=rtol, atol=rtol * 1e-2, dtmin=dtmin), ref)
                recs.append(rec)
                log_rec(rec)
                # A tighter tolerance takes at least as many steps: it would hit the cap too;
                # once >= 95% of the steps sit at the floor, a tighter tolerance only repeats
                # the same fixed-step run at the floor.
                if not rec["finished"]:
                    why = f"rtol={rtol:g} already hit the cap of {plan['max_evals']} evals"
                elif rec["num_floor_steps"] >= 0.95 * rec["num_steps"]:
                    why = f"rtol={rtol:g} was already >= 95% floor steps (fixed step at dtmin)"
    for method, rtol, dtmin in plan["candidates"]:
        if any(
            r["method"] == method
            and r["rtol"] == rtol
            and r["dtmin"] == dtmin
            and not r.get("skipped")
            for r in recs
        ):
            continue
        rec = add_errors(runner.run(method, rtol=rtol, atol=rtol * 1e-2, dtmin=dtmin), ref)
        recs.append(rec)
        log_rec(rec)
    # Per method: the dt ladder (fixed step) or the rtol ladder without a floor (adaptive);
    # per (method, floor) too.
    orders = {}
    for method in ("euler", "heun-fixed", *plan["methods"]):
        orders[method] = fit_order(
            [
                r
                for r in recs
                if r["method"] == method and r["dtmin"] is None and not r.get("skipped")
            ],
            ref_err,
        )
    for method in plan["methods"]:
        for dtmin in plan["floors"]:
            key = f"{method} dtmin={floor_name(dtmin)}"
            orders[key] = fit_order(
                [
                    r
                    for r in recs
                    if r["method"] == method and r["dtmin"] == dtmin and not r.get("skipped")
                ],
                ref_err,
            )
    for k, v in orders.items():
        if v and "dtmin" not in k:
            log(f"order {k:24s} {v['order']:.2f} ({v['n_points']} points)")
    return {
        "problem": dict(spec, n_params=n_params(problem)),
        "plan": plan,
        "reference": public(ref),
        "runs": [public(r) for r in recs],
        "orders": orders,
    }


# ---------------------------------------------------------------------------------------
# sliding
# ---------------------------------------------------------------------------------------
def sliding(spec: dict, plan: dict, recompute: bool = False) -> dict:
    problem = make_problem(spec)
    runner = Runner(problem, spec["t1"], plan["max_evals"])
    log(
        f"\n== sliding: {n_params(problem)} params, {spec['n_train']} samples, "
        f"t in [0, {spec['t1']}]"
    )
    ref = reference(runner, spec["ref_h"], recompute)
    log(
        f"reference heun-fixed dt={spec['ref_h']:g}: {ref['seconds']:.1f} s; vs dt="
        f"{2 * spec['ref_h']:g}: rel err params {ref['ref_err_params']:.2e}"
    )
    recs = []
    for method, rtol, dtmin in plan["runs"]:
        rec = add_errors(
            runner.run(
                method, rtol=rtol, atol=rtol * 1e-2, dtmin=dtmin, max_steps=plan["max_steps"]
            ),
            ref,
        )
        recs.append(rec)
        log_rec(rec)
    return {
        "problem": dict(spec, n_params=n_params(problem)),
        "plan": plan,
        "reference": public(ref),
        "runs": [public(r) for r in recs],
    }


# ---------------------------------------------------------------------------------------
# the acceptance case: the library defaults on a long run
# ---------------------------------------------------------------------------------------
def acceptance(spec: dict, plan: dict, recompute: bool = False) -> dict:
    out = {"problem": spec, "plan": plan, "cases": {}}
    for norm in plan["normalizations"]:
        problem = make_problem(dict(spec, normalization=norm))
        t1 = spec["t1"]
        log(f"\n== acceptance: {norm}, {n_params(problem)} params, t in [0, {t1}]")
        # The library's defaults exactly as a user calls them; the first call compiles.
        start = time.perf_counter()
        gf.flow(problem, t1=t1)
        incl = time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        tr = gf.flow(problem, t1=t1)
        excl, cpu = time.perf_counter() - start, time.process_time() - cpu
        s = tr.stats
        method = s["solver"].lower()
        default = record(
            problem,
            tr,
            method,
            s["rtol"],
            s["atol"],
            s["dtmin"],
            None,
            excl,
            cpu,
            incl - excl,
            s["dtmin"],
        )
        default.update(
            setting="library default: gf.flow(problem, t1=t1)", seconds_incl_compile=incl
        )
        log(
            f"default {s['solver']} rtol={s['rtol']} atol={s['atol']} dtmin={s['dtmin']}: "
            f"{incl:.2f} s incl. compile, {excl:.2f} s excl.; steps {s['num_steps']}, floor "
            f"steps {default['num_floor_steps']}"
        )
        runner = Runner(problem, t1, plan["max_evals"], grid="default")
        ref = reference(runner, plan["ref_h"], recompute)
        log(
            f"reference heun-fixed dt={plan['ref_h']:g}: vs dt={2 * plan['ref_h']:g}: rel err "
            f"params {ref['ref_err_params']:.2e}, data loss {ref['ref_err_loss']:.2e}"
        )
        rows = [default]
        for method, rtol, dtmin in plan["candidates"]:
            if (
                method == default["method"]
                and math.isclose(rtol, s["rtol"])
                and math.isclose(rtol * 1e-2, s["atol"])
                and dtmin == s["dtmin"]
            ):
                continue
            rows.append(runner.run(method, rtol=rtol, atol=rtol * 1e-2, dtmin=dtmin))
        for r in rows:
            add_errors(r, ref)
            log_rec(r)
        out["cases"][norm] = {"reference": public(ref), "runs": [public(r) for r in rows]}
    return out


# ---------------------------------------------------------------------------------------
# plans
# ---------------------------------------------------------------------------------------
MAIN = {"n_train": 512, "dim": 32, "widths": [64, 64], "seed": 0, "weight_decay": 1e-3}
PROBLEMS_FULL = {
    "mlp6208-none": dict(MAIN, normalization="none", t1=5.0, ref_h=2.5e-4),
    "mlp6208-lm-last": dict(MAIN, normalization="lm-last", t1=0.5, ref_h=2.5e-5),
}
SLIDING = {
    "n_train": 40,
    "dim": 10,
    "widths": [7, 7],
    "seed": 0,
    "weight_decay": 0.0,
    "normalization": "none",
    "t1": 10.0,
    "ref_h": 2e-5,
}
ACCEPT = {
    "n_train": 96,
    "dim": 10,
    "widths": [16, 16],
    "seed": 0,
    "weight_decay": 1e-3,
    "t1": 400.0,
}
#: Candidate defaults, run on every problem: (solver, rtol, dtmin); atol = rtol * 1e-2.
#: "1e-5T" is a floor relative to the horizon: 1e-5 * (t1 - t0).
CANDIDATES = [
    ("heun", 1e-6, 1e-3),
    ("heun", 1e-4, None),
    ("heun", 1e-4, 1e-4),
    ("heun", 1e-4, 1e-3),
    ("heun", 1e-4, "1e-5T"),
    ("heun", 1e-4, "1e-6T"),
    ("heun", 1e-5, 1e-4),
    ("bosh3", 1e-4, 1e-4),
]
#: On the acceptance case the library default is timed as a user calls it (first row); a
#: candidate equal to it is not run again.
ACCEPT_CANDIDATES = CANDIDATES


def plans(fast: bool) -> dict:
    if fast:
        cands = [("heun", 1e-4, 1e-4), ("heun", 1e-4, "1e-5T")]
        return {
            "problems": {"mlp6208-none": dict(MAIN, normalization="none", t1=0.5, ref_h=2.5e-4)},
            "wp": {
                "dts": (1e-2, 5e-3),
                "methods": ("heun",),
                "rtols": (1e-3, 1e-4, 1e-5),
                "floors": (None, 1e-3),
                "max_evals": 4000,
                "candidates": cands,
            },
            "sliding": {
                "spec": dict(SLIDING, t1=1.0, ref_h=1e-4),
                "plan": {
                    "max_steps": 20_000,
                    "max_evals": 40_000,
                    "runs": [("heun", 1e-6, None), ("heun", 1e-6, 1e-3), *cands],
                },
            },
            "accept": {
                "spec": dict(ACCEPT, t1=10.0),
                "plan": {
                    "normalizations": ("lm-last",),
                    "ref_h": 2.5e-4,
                    "max_evals": 400_000,
                    "candidates": cands,
                },
            },
        }
    return {
        "problems": PROBLEMS_FULL,
        "wp": {
            "dts": (1e-2, 5e-3, 2.5e-3, 1.25e-3, 6.25e-4),
            "methods": ADAPTIVE,
            "rtols": RTOLS,
            "floors": FLOORS,
            "max_evals": 12_000,
            "candidates": CANDIDATES,
        },
        "sliding": {
            "spec": SLIDING,
            "plan": {
                "max_steps": 300_000,
                "max_evals": 0,
                "runs": [
                    ("heun", 1e-6, None),
                    ("bosh3", 1e-6, None),
                    ("tsit5", 1e-6, None),
                    ("heun", 1e-6, 1e-2),
                    ("heun", 1e-6, 1e-4),
                    ("heun", 1e-5, None),
                    *CANDIDATES,
                ],
            },
        },
        "accept": {
            "spec": ACCEPT,
            "plan": {
                "normalizations": ("lm-last", "none"),
                "ref_h": 2.5e-4,
                "max_evals": 4_000_000,
                "candidates": ACCEPT_CANDIDATES,
            },
        },
    }


# ---------------------------------------------------------------------------------------
# machine, plot, main
# ---------------------------------------------------------------------------------------
def machine() -> dict:
    def sh(cmd):
        try:
            return subprocess.run(
                cmd, shell=True, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "lscpu": sh("lscpu | head -20"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "versions": gf.versions(),
        "devices": [str(d) for d in jax.devices()],
        "library_defaults": dict(gf.dynamics.ODE_DEFAULTS),
        "gradflow_dirty": sh(f"git -C {ROOT} status --porcelain gradflow models"),
    }


FIRST_DEFAULT = ("heun", 1e-6, 1e-3)  # gf.flow's default before this benchmark
RECOMMENDED = ("heun", 1e-4, 1e-4)  # the default this benchmark recommends


def plot(results: dict, path: Path) -> None:
    """Error against gradient evaluations: one panel per work-precision problem, and sliding."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(results["work_precision"].items())
    if "sliding" in results:
        panels.append(("sliding", results["sliding"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.2), squeeze=False)
    colors = {
        "euler": "k",
        "heun-fixed": "tab:gray",
        "heun": "tab:blue",
        "bosh3": "tab:green",
        "tsit5": "tab:red",
    }
    styles = {None: ("o", "-"), 1e-2: ("^", ":"), 1e-3: ("s", "--"), 1e-4: ("D", "-.")}
    for ax, (name, wp) in zip(axes[0], panels):
        groups = {}
        for r in wp["runs"]:
            if r.get("err_params") is None or isinstance(r["dtmin"], str):
                continue
            groups.setdefault((r["method"], r["dtmin"]), []).append(r)
        for (m, floor), rs in groups.items():
            # connect in ladder order (dt or rtol decreasing)
            rs = sorted(rs, key=lambda r: -(r["dt"] or r["rtol"]))
            x = [r["grad_evals"] for r in rs]
            y = [r["err_params"] for r in rs]
            fixed = m in ("euler", "heun-fixed")
            marker, ls = ("o", "-") if fixed else styles.get(floor, ("o", "-"))
            lab = f"{m} (dt ladder)" if fixed else f"{m}, dtmin={floor_name(floor)}"
            ax.loglog(
                x,
                y,
                ls if len(rs) > 1 else "",
                color=colors[m],
                marker=marker,
                ms=4,
                lw=2 if fixed else 1,
                label=lab,
                alpha=0.8,
            )
        for r in wp["runs"]:
            key = (r["method"], r["rtol"], r["dtmin"])
            if r.get("err_params") is not None and key in (FIRST_DEFAULT, RECOMMENDED):
                rec = key == RECOMMENDED
                ax.loglog(
                    [r["grad_evals"]],
                    [r["err_params"]],
                    "*" if rec else "X",
                    ms=16 if rec else 12,
                    mfc="gold" if rec else "magenta",
                    mec="k",
                    zorder=5,
                    ls="",
                    label=(
                        "recommended default: heun rtol=1e-4 dtmin=1e-4"
                        if rec
                        else "first default: heun rtol=1e-6 dtmin=1e-3"
                    ),
                )
        ref = wp["reference"]
        ax.axhline(
            ref["ref_err_params"],
            color="0.5",
            lw=0.8,
            ls=":",
            label="reference's own error (h vs 2h)",
        )
        p = wp["problem"]
        ax.set_title(
            f"{name}: {p['normalization']}, t in [0, {p['t1']:g}], "
            f"{p['n_params']} params, N={p['n_train']}",
            fontsize=9,
        )
        ax.set_xlabel("gradient evaluations")
        ax.set_ylabel("relative L2 error of final weights at t1")
        ax.grid(True, which="both", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=6, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(x, f="{:.2e}"):
    return "—" if x is None else f.format(x)


def _row(r: dict, ref_err: float | None = None) -> str:
    setting = label(r).split(" ", 1)[1]
    if r.get("skipped"):
        return f"| {r['method']} | {setting} | — | — | — | — | — | skipped: {r['skipped']} |"
    err = r.get("err_params")
    note = "" if r["finished"] else f"capped at t={r['t_reached']:.3g}"
    if err is not None and ref_err is not None and err <= 3 * ref_err:
        note = "≤ 3x the reference's own error"
    return (
        f"| {r['method']} | {setting} | {r['grad_evals']} | {r['num_floor_steps']} | "
        f"{r['seconds']:.2f} | {_fmt(err)} | {_fmt(r.get('err_loss'))} | {note} |"
    )


def summarize(results: dict) -> str:
    """Markdown tables of a results dict (pasted into benchmarks/README.md)."""
    out = []
    head = (
        "| method | setting | grad evals | floor steps | seconds | rel. error weights | "
        "rel. error data loss | note |\n|---|---|---|---|---|---|---|---|"
    )
    for name, wp in results.get("work_precision", {}).items():
        ref = wp["reference"]
        p = wp["problem"]
        out.append(f"\n#### {name}: {p['normalization']}, t in [0, {p['t1']}]\n")
        out.append(
            f"Reference: fixed-step Heun dt={p['ref_h']:g} ({ref['num_steps']} steps); "
            f"its difference to dt={2 * p['ref_h']:g}: {ref['ref_err_params']:.2e} "
            f"(weights), {ref['ref_err_loss']:.2e} (data loss).\n"
        )
        out.append(head)
        out += [_row(r, ref["ref_err_params"]) for r in wp["runs"]]
        out.append(
            "\nFitted orders (error ~ evals^-p; fixed step: dt ladder, adaptive: rtol "
            "ladder without floor):\n"
        )
        out += [
            f"- {k}: p = {v['order']:.2f} ({v['n_points']} points, evals "
            f"{v['evals_range'][0]}–{v['evals_range'][1]})"
            for k, v in wp["orders"].items()
            if v and "dtmin" not in k
        ]
    if "sliding" in results:
        sl = results["sliding"]
        p = sl["problem"]
        out.append(
            f"\n#### sliding: {p['n_params']} params, {p['n_train']} samples, t in [0, {p['t1']}]\n"
        )
        out.append(
            f"Reference: fixed-step Heun dt={p['ref_h']:g}; its difference to dt="
            f"{2 * p['ref_h']:g}: {sl['reference']['ref_err_params']:.2e}.\n"
        )
        out.append(head)
        out += [_row(r, sl["reference"]["ref_err_params"]) for r in sl["runs"]]
    if "acceptance" in results:
        ac = results["acceptance"]
        for norm, case in ac["cases"].items():
            out.append(f"\n#### acceptance: {norm}, t in [0, {ac['problem']['t1']}]\n")
            d = case["runs"][0]
            out.append(
                f"Library default ({d['method']}, rtol={d['rtol']:g}, atol="
                f"{d['atol']:g}, dtmin={d['dtmin']}): {d['seconds_incl_compile']:.2f} s "
                f"including compilation, {d['seconds']:.2f} s excluding; "
                f"{d['num_steps']} steps of which {d['num_floor_steps']} at the floor.\n"
            )
            out.append(head)
            out += [_row(r) for r in case["runs"]]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="a < 1 minute smoke version")
    ap.add_argument(
        "--out",
        default=None,
        help="JSON path (default benchmarks/results/"
        "work_precision[_fast].json); the PNG goes next to it",
    )
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        choices=("wp", "sliding", "accept"),
        help="run only these parts",
    )
    ap.add_argument(
        "--summarize",
        default=None,
        metavar="JSON",
        help="print the markdown tables of an earlier results file and exit",
    )
    ap.add_argument(
        "--recompute-reference", action="store_true", help="recompute the cached reference runs"
    )
    args = ap.parse_args(argv)
    if args.summarize:
        print(summarize(json.loads(Path(args.summarize).read_text())))
        return 0
    out = (
        Path(args.out)
        if args.out
        else (
            HERE / "results" / ("work_precision_fast.json" if args.fast else "work_precision.json")
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ("wp", "sliding", "accept"))
    plan = plans(args.fast)
    t_start = time.perf_counter()
    results = {
        "machine": machine(),
        "fast": args.fast,
        "load_average_start": os.getloadavg(),
        "work_precision": {},
    }
    log(f"gradflow defaults: {results['machine']['library_defaults']}")
    if "wp" in only:
        for name, spec in plan["problems"].items():
            t = time.perf_counter()
            results["work_precision"][name] = work_precision(
                name, spec, plan["wp"], args.recompute_reference
            )
            results["work_precision"][name]["section_seconds"] = time.perf_counter() - t
    if "sliding" in only:
        t = time.perf_counter()
        results["sliding"] = sliding(
            plan["sliding"]["spec"], plan["sliding"]["plan"], args.recompute_reference
        )
        results["sliding"]["section_seconds"] = time.perf_counter() - t
    if "accept" in only:
        t = time.perf_counter()
        results["acceptance"] = acceptance(
            plan["accept"]["spec"], plan["accept"]["plan"], args.recompute_reference
        )
        results["acceptance"]["section_seconds"] = time.perf_counter() - t
    results["total_seconds"] = time.perf_counter() - t_start
    results["load_average_end"] = os.getloadavg()
    out.write_text(json.dumps(results, indent=1, default=_json_default))
    if results["work_precision"]:
        plot(results, out.with_suffix(".png"))
    log(summarize(results))
    log(f"\nwrote {out} ({results['total_seconds']:.0f} s)")
    return 0


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
