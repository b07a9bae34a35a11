"""Test configuration: float64 everywhere, a bounded Hypothesis profile."""

import os

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

jax.config.update("jax_enable_x64", True)

settings.register_profile(
    "gradflow",
    deadline=None,
    max_examples=15,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
settings.load_profile("gradflow")

#: The slowest tests (measured: tens of seconds to minutes each on 2 cores), started first so
#: that `pytest -n 2` does not end with one worker running a long test while the other idles
#: (longest-first scheduling). Order only: every test still runs.
SLOW_FIRST = (
    "test_figs_fast_then_cached",
    "test_dask_cluster_equals_in_process",
    "test_sigterm_then_resume_equals",
    "test_sigint_then_resume_equals",
    "test_balanced_equilibria_and_their_stability",
    "test_ensembles_one_compilation",
    "test_resume_recomputes_only_the_missing_points",
    "test_batched_sweep_equals_the_runs_made_one_by_one",
    "test_lm_flows_keep_unit_norms",
    "test_wn_reproduces_lm_all",
    "test_neural_collapse_with_centred_targets",
    "test_stationary_covariance_solves",
    "test_balancedness_law",
    "test_relu_lm_last_fixed_point_from_the_end",
    "test_paper_scenario_runs",
)


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        for i, name in enumerate(SLOW_FIRST):
            if item.name.startswith(name):
                return i
        return len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order
