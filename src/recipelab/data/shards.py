"""How DDP's processes share a run's batches: how many processes a trainer config starts, and each one's
share of ``data.batch_size`` (the global batch). Read by the preflight and by the run it checks."""

from __future__ import annotations

from omegaconf import ListConfig

from recipelab.errors import UserError, shown


def planned_world_size(trainer) -> int | None:
    """The processes a trainer config starts, trainer.devices x trainer.num_nodes, as Lightning counts the
    devices (a count, a list, or a string "2" or "0,1"); None where the machine decides ("auto", -1)."""
    devices = trainer.get("devices", "auto")
    if isinstance(devices, str):
        given, devices = devices, devices.replace(" ", "")
        if "," in devices or devices.isdigit():
            devices = [d for d in devices.split(",") if d] if "," in devices else int(devices)
        elif devices not in ("auto", "-1"):
            raise UserError(f"trainer.devices={given!r}: must be a count, a list of indices, '0,1' or 'auto'")
    if trainer.get("accelerator") == "cpu" and not (
        devices == "auto" or isinstance(devices, int) and devices > 0
    ):
        raise UserError(  # Lightning's CPU accelerator takes a count of processes only
            f"trainer.devices={shown(trainer.get('devices'))}: on the CPU (trainer.accelerator=cpu) it is a "
            "count of processes or 'auto'"
        )
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        count = devices
    elif isinstance(devices, list | tuple | ListConfig):
        count = len(devices)
    else:
        return None
    return count * int(trainer.get("num_nodes", 1) or 1)


def per_process_batch(batch_size, world_size: int):
    """``data.batch_size`` is the global batch: under DDP each of ``world_size`` processes takes a share."""
    if world_size == 1:
        return batch_size
    if not isinstance(batch_size, int) or batch_size % world_size:
        raise UserError(
            f"data.batch_size={batch_size}: under DDP it must be an integer divisible by the number of "
            f"processes ({world_size} = trainer.devices x trainer.num_nodes)"
        )
    return batch_size // world_size
