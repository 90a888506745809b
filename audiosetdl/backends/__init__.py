"""Backends decide where a task runs (this process, or SLURM job arrays); nothing else.

A stage is a callable `(run: RunDir, index: int, options) -> summary` (e.g.
`audiosetdl.download.stage.run_task`); a backend runs it for a set of task indices.
"""
