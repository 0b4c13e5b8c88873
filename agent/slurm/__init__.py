"""The Slurm glue: tasks from queues run as Slurm batch jobs (``agent slurm``)."""
