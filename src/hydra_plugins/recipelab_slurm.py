"""recipelab's SLURM launcher (``launcher=slurm``): hydra-submitit-launcher's, whose jobs save their step,
requeue and resume when SLURM warns of the time limit. Hydra takes launchers only from the
``hydra_plugins`` package (and imports every module in it at start): what it does is in
``recipelab.run.slurm``, imported when it is used."""

from hydra_plugins.hydra_submitit_launcher import submitit_launcher


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    def launch(self, job_overrides, initial_job_idx):
        from recipelab.run import slurm

        slurm.prepare_launch(self.params, self.config)
        return super().launch(job_overrides, initial_job_idx)

    def __call__(self, sweep_overrides, *args):
        from recipelab.run import slurm

        return slurm.run_task(super().__call__, sweep_overrides, *args)
