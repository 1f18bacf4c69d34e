"""jaxrl.meta: outer loops around whole training runs.

- `jaxrl.meta.es`: evolution strategies over pytrees on evosax 0.3, maximising fitness (the sign flip for
  evosax lives in `ES.tell` only).
- `jaxrl.meta.discover`: objective discovery (an ES over LPO / TA-LPO weights; one generation = population x
  seeds of inner training runs in one compiled program).

The `jaxrl meta` commands (discover, tune, evaluate), baselines, checkpoints and plots are not built yet.
"""
