"""Reading what runs left behind: run folders and their records, checkpoints loaded safely and rebuilt
from their stored config (an allow-list of the project's own classes), scores, and result runs in W&B.
Shared by the evaluate, ensemble, report and results entries."""
