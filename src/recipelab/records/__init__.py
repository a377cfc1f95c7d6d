"""A run folder's records, below everything that writes or reads them.

Where a run's files are and how they are read (``folder``), how ``metrics.json`` is written and how runs
are named and grouped in W&B (``tracking``), and how an offline W&B run file is read back (``wandb_file``).
``build``, ``run/`` and ``results/`` import these; nothing here imports them.
"""
