"""The parts of ``make bench``: a plain PyTorch loop timed step by step against the template's run."""
