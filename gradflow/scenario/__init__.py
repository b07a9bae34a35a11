"""Scenario files: the schema (``_schema.py``), validation into a :class:`Config`
(``_config.py``), running it (``_run.py``) and its summary plot (``_plot.py``).

    config = gf.scenario.load_config("scenarios/quickstart.toml", sets=["sgd.lr=0.1"])
    outcome = gf.scenario.run(config, "results")
"""

from .._validate import ConfigError
from ._config import Config, RunSpec, load_config, parse_set, validate
from ._plot import summary_plot
from ._run import Outcome, build_problem, run, run_one
from ._schema import REQUIRED, SCHEMA
from ._sweep import run_points, sweep, task_outcomes
from ._sweep_spec import TRACED, Point, SweepSpec, load_sweep, sweep_points
from ._show import show
from ._sweep_plot import sweep_plot

__all__ = [
    "Config",
    "ConfigError",
    "Outcome",
    "REQUIRED",
    "RunSpec",
    "SCHEMA",
    "build_problem",
    "load_config",
    "parse_set",
    "run",
    "run_one",
    "summary_plot",
    "sweep",
    "sweep_points",
    "run_points",
    "task_outcomes",
    "load_sweep",
    "Point",
    "SweepSpec",
    "TRACED",
    "validate",
    "show",
    "sweep_plot",
]
