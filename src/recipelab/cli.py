"""What every entry shares: where the configs live, and one error boundary.

An entry is thin: it parses its arguments, calls one function and exits through ``error_boundary``,
which turns the errors that mean "this run ended for a known reason" into one line and an exit code
(the table in docs/how-a-run-ends.md): bad input 2, divergence 3, SIGINT 130, SIGTERM 143.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback

from recipelab.errors import Diverged, Interrupted, UserError
from recipelab.records.folder import CONF_DIR
from recipelab.records.summary import to_log_files

EXIT_CODES = {UserError: 2, Diverged: 3}


def error_boundary(fn):
    """``fn`` with its known errors turned into ``error: <one line>`` on stderr and their exit code; that
    line, or any other error's traceback (which Hydra prints, exit code 1), also ends the run's train.log."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UserError, Diverged) as err:
            report_error(err)
            sys.exit(EXIT_CODES[Diverged] if isinstance(err, Diverged) else EXIT_CODES[UserError])
        except Interrupted as err:
            report_error(err)
            sys.exit(128 + err.signum)
        except KeyboardInterrupt:  # outside training (which turns signals into Interrupted)
            print("error: interrupted", file=sys.stderr)
            sys.exit(130)
        except Exception as err:
            report_error(err, terminal=False)  # Hydra prints it on the terminal
            raise

    return wrapper


def report_error(err: Exception, terminal: bool = True) -> None:
    """A known error's one line, any other's traceback: in the run's log, and on stderr (``terminal``)."""
    known = isinstance(err, UserError | Diverged | Interrupted)
    text = f"error: {err}" if known else traceback.format_exc().rstrip()
    if terminal:
        print(text, file=sys.stderr)
    to_log_files(text, logging.ERROR)


def hydra_entry(task, config_name: str, preflight: bool = True):
    """The command-line function of a Hydra entry: ``task(cfg)`` inside ``hydra.main``, behind the error
    boundary, and (``preflight``) the command line checked before Hydra makes a run folder."""
    import hydra

    main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)(error_boundary(task))

    @error_boundary
    def run() -> None:
        if preflight:
            from recipelab.run.validate import preflight as check

            sys.argv = check(sys.argv, CONF_DIR, config_name)
        main()

    return run
