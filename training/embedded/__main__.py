"""`python -m training.embedded ...`: the embedded guard's trainer (training/embedded/train.py)."""

from training.embedded.train import main

main()
