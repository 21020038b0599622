"""``ferry tune``: hyperparameter search over transfer strategies and their knobs, on Optuna.

``space`` turns ``tune.space`` into Optuna draws and a trial's config; ``study`` opens the
RDB-stored study (sampler, pruner, heartbeat, resume); ``trial`` is one trial as a child run
trained by the same steps as ``ferry run``; ``search`` is the parent run, the deadline, the
local or spread trials and the winner's registration; ``report`` the CSV and plots. The only
module that imports Optuna's storage and samplers is ``study``.
"""
