"""The dynamics of a :class:`gradflow.Problem`, all on the flow's time axis ``t``.

* :func:`simulate` (``_simulate.py``): the one driver. It runs a dynamics object — :class:`ODE`
  (the gradient flow, ``_ode.py``), :class:`SDE` (the SDE of SGD, ``_sde.py``), :class:`SGD`
  (discrete steps of an Optax transformation, ``_sgd.py``), each an :class:`AbstractDynamics`
  with ``init`` and ``advance`` (``_driver.py``) — through one segmented loop (blocks, seeds,
  checkpoints, signals, progress) and returns a :class:`gradflow.Trajectory`.
* :func:`flow`, :func:`sde`, :func:`sgd`: conveniences that build the object and call
  :func:`simulate`.
* :class:`RESULTS` and ``throw=`` (``_failure.py``): how a run ended, and whether a failure
  raises (:class:`RunFailed`) or is returned.
* ``ODE_DEFAULTS``, ``SDE_DEFAULTS``, ``SGD_DEFAULTS`` (``_defaults.py``): one table of defaults
  per dynamics, read by the API and by the scenario schema.
"""

from ._checkpoint import Checkpoint as Checkpoint
from ._checkpoint import Interrupted as Interrupted
from ._defaults import ODE as ODE_DEFAULTS
from ._defaults import SDE as SDE_DEFAULTS
from ._defaults import SGD as SGD_DEFAULTS
from ._driver import AbstractDynamics as AbstractDynamics
from ._failure import RESULTS as RESULTS
from ._failure import Diverged as Diverged
from ._failure import MaxStepsReached as MaxStepsReached
from ._failure import RunFailed as RunFailed
from ._ode import ODE as ODE
from ._ode import SOLVERS as SOLVERS
from ._ode import default_controller as default_controller
from ._ode import flow as flow
from ._sde import SDE as SDE
from ._sde import SDE_SOLVERS as SDE_SOLVERS
from ._sde import sde as sde
from ._sgd import SGD as SGD
from ._sgd import sgd as sgd
from ._simulate import simulate as simulate

#: The user concepts; the batching of sweeps (``_batch.plan``, ``run_plans``) and the solvers'
#: tables are internals, imported from their private modules.
__all__ = [
    "AbstractDynamics",
    "Checkpoint",
    "Diverged",
    "Interrupted",
    "MaxStepsReached",
    "ODE",
    "ODE_DEFAULTS",
    "RESULTS",
    "RunFailed",
    "SDE",
    "SDE_DEFAULTS",
    "SDE_SOLVERS",
    "SGD",
    "SGD_DEFAULTS",
    "SOLVERS",
    "default_controller",
    "flow",
    "sde",
    "sgd",
    "simulate",
]
