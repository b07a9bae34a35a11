"""Scenarios: a typed :class:`Scenario` validated from a TOML file (``_config.py``) against the
schema (``_schema.py``) that the registries of models and dynamics (``_registry.py``) define;
running it (``_run.py``), sweeping it (``_sweep.py``) and its plots.

    scenario = gf.scenario.load_config("scenarios/quickstart.toml", fast=True)
    scenario = scenario.replace(weight_decay=0.05)     # typed overrides, validated again
    outcome = gf.scenario.run(scenario, "results")
"""

from .._validate import ConfigError as ConfigError
from ._config import RunSpec as RunSpec
from ._config import Scenario as Scenario
from ._config import load_config as load_config
from ._config import overrides_of as overrides_of
from ._config import parse_set as parse_set
from ._config import validate as validate
from ._integrity import scenario_key as scenario_key
from ._integrity import scenario_record as scenario_record
from ._plot import summary_plot as summary_plot
from ._registry import DYNAMICS as DYNAMICS
from ._registry import MODELS as MODELS
from ._run import Outcome as Outcome
from ._run import build_problem as build_problem
from ._run import run as run
from ._schema import SCHEMA as SCHEMA
from ._show import show as show
from ._sweep import run_points as run_points
from ._sweep import sweep as sweep
from ._sweep_plot import sweep_plot as sweep_plot
from ._sweep_spec import sweep_points as sweep_points

__all__ = [
    "build_problem",
    "ConfigError",
    "DYNAMICS",
    "load_config",
    "MODELS",
    "Outcome",
    "overrides_of",
    "parse_set",
    "run",
    "run_points",
    "RunSpec",
    "Scenario",
    "scenario_key",
    "scenario_record",
    "SCHEMA",
    "show",
    "summary_plot",
    "sweep",
    "sweep_plot",
    "sweep_points",
    "validate",
]
