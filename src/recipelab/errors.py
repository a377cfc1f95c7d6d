"""The ways a run can end other than completing; every entry turns them into one line and an exit code."""

import signal

from omegaconf import DictConfig, ListConfig, OmegaConf


class UserError(Exception):
    """Bad input found before any work started (config value, missing data, missing checkpoint): exit 2."""


def shown(value) -> str:
    """A config value in an error line as the command line writes it: [0, 1], {op: flip}, 'two'."""
    if isinstance(value, DictConfig | ListConfig):
        return str(OmegaConf.to_container(value)).replace("'", "")
    return repr(value)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite: exit 3."""

    def __init__(self, step: int, epoch: int, lr: float, loss: float):
        self.step, self.epoch, self.lr, self.loss = step, epoch, lr, loss
        super().__init__(f"training diverged at step {step} (epoch {epoch}) with lr={lr:.6g}: loss is {loss}")


class Interrupted(Exception):
    """SIGINT or SIGTERM stopped training after a finished optimizer step, saved as last.ckpt: exit 128 +
    the signal's number (130, 143)."""

    def __init__(self, signum: int, step: int, epoch: int):
        self.signum, self.step, self.epoch = signum, step, epoch
        self.name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {self.name} at step {step} (epoch {epoch}); last.ckpt holds that step"
        )
