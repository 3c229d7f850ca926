"""`rsafe`: the gateway's commands, plus `eval` (guard/) and `train` (training/)."""

from __future__ import annotations

from gateway.commands.cli import app
from guard.evaluation.cli import eval_command
from training.cli import train_app

app.command("eval")(eval_command)
app.add_typer(train_app, name="train")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
