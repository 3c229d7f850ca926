"""The `rsafe` command: the one place where gateway, guard and training meet.

Each package contributes its own sub-commands (`gateway.commands.cli.app`: serve, check, policies,
logs, guard; `guard.evaluation.cli`: eval; `training.cli.train_app`: train), so nothing in
gateway/ or guard/ imports training/.
"""
