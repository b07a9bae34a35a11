"""The dynamics of a :class:`gradflow.Problem`, all on the flow's time axis ``t``.

* :func:`flow` (``_ode.py``): the gradient-flow ODE; with ``noise=SGDNoise(...)`` the SDE of
  SGD (:func:`sde`, ``_sde.py``). Both run on the integration core of ``_core.py`` (one
  ``diffeqsolve`` call, one place that turns its result into stats).
* :func:`sgd` (``_sgd.py``): discrete SGD / GD on the same problem, step ``j`` at ``t = η j``.
* :class:`ODE`, :class:`SDE`, :class:`SGD` (``_driver.py``: :class:`AbstractDynamics`): each
  dynamics as an object with ``init`` and ``advance``; every direct call runs them through
  the one segmented loop of ``_driver.py`` (blocks, seeds, checkpoints, signals, progress).
* ``ODE_DEFAULTS``, ``SDE_DEFAULTS``, ``SGD_DEFAULTS`` (``_defaults.py``): one table of defaults
  per dynamics, read by the API and by the scenario schema.
"""

from ._batch import Plan, plan, run_plans
from ._checkpoint import Checkpoint, Interrupted
from ._core import save_times
from ._defaults import ODE as ODE_DEFAULTS
from ._defaults import SDE as SDE_DEFAULTS
from ._defaults import SGD as SGD_DEFAULTS
from ._driver import AbstractDynamics
from ._failure import BLOW_UP, STATUSES, Diverged, MaxStepsReached, RunFailed
from ._ode import (
    DEFAULT,
    EVALS_PER_STEP,
    ODE,
    SOLVERS,
    default_controller,
    evaluations_per_step,
    flow,
    resolve_solver,
)
from ._sde import SDE, SDE_SOLVERS, sde
from ._sgd import SGD, batch_indices, sgd

__all__ = [
    "AbstractDynamics",
    "Checkpoint",
    "DEFAULT",
    "BLOW_UP",
    "Diverged",
    "MaxStepsReached",
    "RunFailed",
    "STATUSES",
    "EVALS_PER_STEP",
    "Interrupted",
    "ODE",
    "ODE_DEFAULTS",
    "Plan",
    "SDE",
    "SDE_DEFAULTS",
    "SDE_SOLVERS",
    "SGD",
    "SGD_DEFAULTS",
    "SOLVERS",
    "batch_indices",
    "default_controller",
    "evaluations_per_step",
    "plan",
    "flow",
    "resolve_solver",
    "run_plans",
    "save_times",
    "sde",
    "sgd",
]
