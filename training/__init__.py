"""Training the guard models (see docs/training.md).

- `training.rsafe`: the RSafe reasoning guard's pipeline, composed on TRL: `data` ->
  `sft` (teacher traces, rejection sampling) -> `grpo` (rule rewards from `rewards`) -> `export`.
- `training.embedded`: the embedded guard's trainer (`python -m training.embedded`).
- `training.demo`: the CPU demonstration of the reasoning guard's pipeline with a tiny model
  built from scratch (`python -m training.demo`), and the GPU check that reuses it.
- `training.cli`: the `rsafe train ...` sub-commands.
"""
