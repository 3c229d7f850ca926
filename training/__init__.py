"""Training the guard models.

The RSafe reasoning guard (composed on TRL): `data` -> `sft` (teacher traces,
rejection sampling) -> `grpo` (rule rewards from `rewards`) -> `export`, with
`demo` running the whole chain on a CPU with a tiny model. The embedded
guard's trainer lives in `embedded*.py`. See docs/training.md.
"""
