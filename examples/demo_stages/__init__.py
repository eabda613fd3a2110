"""Demo stages, run in name order by ``examples/demo.py``."""
