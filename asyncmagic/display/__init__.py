"""Display: what a person sees of the output on its way out (streaming, pacing, head and
tail, split columns, status lines, tables).

It reads the engine's Results and Jobs and starts nothing; it never imports
:mod:`asyncmagic.kernel`.
"""
