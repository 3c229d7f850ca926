"""`rsafe eval`: measure any guard backend on JSONL safety sets (see `runner.py`)."""
