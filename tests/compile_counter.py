"""A counter of JAX traces and XLA compilations, from JAX's public ``jax.monitoring`` events."""

import jax


class CompileCounter:
    """Counts XLA compilations (and traces) of jitted functions whose name contains ``name``.

    Uses ``jax.monitoring``'s duration events, which JAX emits once per trace and once per
    backend compilation (``fun_name`` is the jitted function's name, e.g. ``jit(_run)``);
    cache hits emit nothing.
    """

    COMPILE = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch's names
    TRACE = "/jax/core/compile/jaxpr_trace_duration"

    def __init__(self, *names):
        self.names = names
        self.compiles = 0
        self.traces = 0

    def __call__(self, event, duration, **kw):
        if event not in (self.COMPILE, self.TRACE):
            return
        if not any(n in str(kw.get("fun_name", "")) for n in self.names):
            return
        if event == self.COMPILE:
            self.compiles += 1
        else:
            self.traces += 1

    def __enter__(self):
        jax.monitoring.register_event_duration_secs_listener(self)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self)
