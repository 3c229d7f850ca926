"""`rsafe train ...`: the training sub-commands (registered by rsafe/cli.py, never by the gateway)."""

from __future__ import annotations

import typer

from training.rsafe import data, export, grpo, sft

train_app = typer.Typer(help="Train guards (the embedded classifier; the RSafe reasoning guard: data, sft, grpo, export).",
                        no_args_is_help=True)
train_app.command("data")(data.cli)
train_app.command("sft")(sft.cli)
train_app.command("grpo")(grpo.cli)
train_app.command("export")(export.cli)


@train_app.command("embedded", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_embedded(ctx: typer.Context) -> None:
    """Train the embedded guard (arguments as `python -m training.embedded --help`)."""
    from training.embedded.train import main as train_main  # imports torch: only when asked

    train_main(list(ctx.args))
