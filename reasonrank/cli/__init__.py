"""The commands: one module each (a parser and a main), behind the documented ``python -m reasonrank.X`` forms."""
