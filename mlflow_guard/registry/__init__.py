"""Registry gates and promotion approvals on the guard server (issue 4).

Modules: :mod:`.records` (approvals and promotion requests in the guard database),
:mod:`.artifacts` (a version's artifacts as a local directory, resolved by the server),
:mod:`.subject` (what the server establishes about a version: recomputed root digest, creators,
signer, metrics), :mod:`.enforce` (protected-target detection for every registry mutation and
the registration gate), :mod:`.api` (REST under ``/api/2.0/mlflow-guard/promotions``) and
:mod:`.web` (reviewer pages under ``/guard/``). Nothing here imports MLflow at import time.
"""
