"""`python -m training.demo ...`: the CPU demonstration (training/demo/run.py)."""

from training.demo.run import main

raise SystemExit(main())
