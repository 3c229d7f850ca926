"""The gateway's command line: `rsafe serve/check/policies/logs/guard` (cli), workers, logging set-up, the policy test runner."""
