"""A run's log file (``bench.log``, conf/hydra/job_logging/bench.yaml): the run's own lines, not a launcher's.

Under hydra-submitit-launcher the job's process also carries submitit's bookkeeping, which its own
``.submitit/<job>/`` logs keep. In ``bench.log`` it read as the run's outcome: "Job completed successfully"
under a run that had recorded itself ``interrupted`` (the job's function returned; the run had stopped).
"""

from __future__ import annotations

import logging

#: loggers whose records stay out of bench.log: they are written to the launcher's own logs
LAUNCHER_LOGGERS = ("submitit",)


class RunLinesOnly(logging.Filter):
    """Drops a launcher's records (LAUNCHER_LOGGERS and their children) from the handler it is set on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(record.name == name or record.name.startswith(f"{name}.") for name in LAUNCHER_LOGGERS)
