"""Replaying quarantined events: judged again against the current plans (or a plan version),
optionally fixed with JSON Patch, published once to the events topic when they pass.

``spec`` declares a replay, ``judge`` decides one record, ``runner`` runs a job with its state
in the catalog, ``command`` is ``gateway replay``; the native API's jobs are in
gateway.catalog.native.replays.
"""
