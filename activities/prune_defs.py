"""The prune activities' interface, for the workflow that calls them: their names, with their input and output
in ``dataapi.retention``. Workflows import this, never ``activities.prune`` (the store, the artifacts)."""

PRUNE_RECORDS = "prune_records"  # PruneInput -> PruneCounts: expired results, job rows, deliveries, tokens
PRUNE_WORK_FOLDERS = "prune_work_folders"  # PruneInput -> PruneCounts: a jobs worker's leftover job folders
