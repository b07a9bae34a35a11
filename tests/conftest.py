"""Test configuration: float64 everywhere, a bounded Hypothesis profile."""

import gc
import os

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

jax.config.update("jax_enable_x64", True)

# ---- one persistent compilation cache per test run, shared by its processes ----
#
# ``jax.clear_caches`` after every module (below) and the CLI tests' subprocesses compile the
# same small programs again and again (a network's initialization, eager array operations,
# the same flows): measured 2026-12-07 on 6 test modules, 222.6 -> 206.3 user CPU s with a cold
# cache (one run each; within this machine's noise on the dynamics modules). The directory is
# made by the first process (pytest's, or xdist's controller) and inherited through the
# environment by the workers and every subprocess they start; it is removed when that process
# ends. Correctness does not depend on it: a cache entry is keyed on
# the whole program, the backend and the flags, and an entry JAX cannot read is compiled
# again. ``GRADFLOW_TEST_JAX_CACHE=0`` turns it off. The compile-counting tests are unaffected:
# JAX emits its ``backend_compile`` event around ``compile_or_get_cached``, hit or miss.
_JAX_CACHE_ENV = "GRADFLOW_TEST_JAX_CACHE_DIR"
_OWN_JAX_CACHE = None
if os.environ.get("GRADFLOW_TEST_JAX_CACHE", "1") != "0":
    import tempfile

    if _JAX_CACHE_ENV not in os.environ:
        _OWN_JAX_CACHE = tempfile.mkdtemp(prefix="gradflow-tests-jax-cache-")
        os.environ[_JAX_CACHE_ENV] = _OWN_JAX_CACHE
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ[_JAX_CACHE_ENV]  # subprocesses
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_compilation_cache_dir", os.environ[_JAX_CACHE_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def pytest_unconfigure(config):
    if _OWN_JAX_CACHE is not None:
        import shutil

        shutil.rmtree(_OWN_JAX_CACHE, ignore_errors=True)


#: 10 examples per property (15 until 2026-12-07: the Hypothesis tests of test_flow.py alone
#: were 110 CPU s of the 20-minute CI); a test that needs more says so with @settings
settings.register_profile(
    "gradflow",
    deadline=None,
    max_examples=10,
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


# ---- CPU seconds per test (opt-in): load-insensitive timings on a shared, noisy machine ----
#
# GRADFLOW_TEST_CPU_LOG=FILE appends one line per test: nodeid, CPU seconds of the test's
# process and of the subprocesses it waited for (getrusage), wall seconds. Unlike pytest's
# --durations (wall time), the CPU seconds hardly change when other work shares the cores, so
# they show where the suite's time goes even on a loaded machine.
_CPU_LOG = os.environ.get("GRADFLOW_TEST_CPU_LOG")

if _CPU_LOG:
    import resource
    import time

    import pytest

    def _cpu_seconds() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        cpu, wall = _cpu_seconds(), time.perf_counter()
        yield
        cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
        with open(_CPU_LOG, "a") as log:
            log.write(f"{item.nodeid}\t{cpu:.2f}\t{wall:.2f}\n")


@pytest.fixture(autouse=True, scope="module")
def _fresh_compilation_caches():
    """Drop every compiled program after each test module (``jax.clear_caches``): a worker of
    ``pytest -n 2`` otherwise holds every program the suite compiled (5–6 GB by the end), and
    twice on 2026-12-06 a worker crashed with a segmentation fault inside XLA's compiler late in
    the run (not reproduced alone). Modules share few programs, so little is compiled twice."""
    yield
    jax.clear_caches()
    gc.collect()
