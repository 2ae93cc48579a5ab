"""The kernel layer: the magics, their options and syntax, the awaiting rewrite, and running
commands and jobs for cells (where captures are stored and errors decided)."""
