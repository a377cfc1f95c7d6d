"""The ways a run can end other than completing; every entry turns them into one line and an exit code."""


class UserError(Exception):
    """Bad input found before any work started (config value, missing data, missing checkpoint): exit 2."""


class Diverged(RuntimeError):
    """The training loss became NaN or infinite: exit 3."""

    def __init__(self, step: int, epoch: int, lr: float, loss: float):
        self.step, self.epoch, self.lr, self.loss = step, epoch, lr, loss
        super().__init__(f"training diverged at step {step} (epoch {epoch}) with lr={lr:.6g}: loss is {loss}")
