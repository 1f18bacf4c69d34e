"""jaxrl.meta: outer loops around whole training runs.

- `es`: evolution strategies over pytrees on evosax 0.3, maximising fitness (the sign flip for evosax lives in
  `ES.tell` only).
- `population`: a population x seeds of inner training runs as one compiled, sharded, batched program.
- `baselines`: the PPO-clip (under the same inner settings) / untrained-policy returns that put environments on
  one scale (cached on disk per settings and seed list).
- `search`: the generation loop shared by discovery and tuning (checkpoints, resume, progress); it keeps a pool of
  candidates (`candidates`), which `validation` re-scores on new seeds to pick the result.
- `levels`: level curation for unsupervised environment design: the PLR level buffer, level scores (positive
  value loss, MaxMC, learnability) and ACCEL's maze edits.
- `discover`, `tune`, `evaluate`: the `jaxrl meta` commands (`cli`), and `plots` for their figures.
"""
