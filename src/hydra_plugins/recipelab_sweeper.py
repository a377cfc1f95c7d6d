"""recipelab's basic sweeper (the default, conf/hydra/default.yaml): Hydra's basic sweeper, with the seed
axis cut into chunks of ``seeds_per_process`` (each chunk one job that trains its seeds fused, leaving one
job folder per seed). Hydra takes sweepers only from the ``hydra_plugins`` package; what it does is in
``recipelab.run.chunks``, imported when it is used."""

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class SeedChunkBasicSweeper(BasicSweeper):
    def split_arguments(self, overrides, max_batch_size):  # an instance method here: it reads the config
        from recipelab.run import chunks

        jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
        launched = chunks.chunk_jobs(jobs, self.config.get("seeds_per_process", 1))
        return list(BasicSweeper.split_overrides_to_chunks(launched, max_batch_size))
