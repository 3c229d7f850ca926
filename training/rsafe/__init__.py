"""The RSafe reasoning guard's training pipeline: `data` -> `sft` -> `grpo` -> `export`.

Each stage is a module with a `main()` for `python -m training.rsafe.STAGE` and a Typer
`cli` for `rsafe train STAGE`. `teacher` gets the SFT traces, `rewards` scores GRPO's
rollouts (with the serving parser), `grpo_monitor` watches GRPO for collapse,
`generate` runs and scores a local checkpoint.
"""
