"""Where the feature stage's jobs run: :class:`~regal_torch.engine.local.LocalEngine`
(worker processes of this machine, ``engine=local``) or
:class:`~regal_torch.engine.ray_engine.RayEngine` (Ray tasks on this machine or a cluster,
``engine=ray``); both are an :class:`~regal_torch.engine.jobs.Engine`.
"""
