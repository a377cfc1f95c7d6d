"""What a run or a sweep needs around training: validation before any work, resume, sweep bookkeeping,
what a run records (metrics.json, W&B identity), DDP launch inside a job, and the W&B log reader.

This package knows no model, dataset or LightningModule: what it needs of them it gets from
``recipelab.build``, the composition root.
"""
