"""The repository job activities' interface, for the workflow that calls them: their names, with their inputs and
outputs in ``dataapi.messages``. Workflows import this, never ``activities.jobs`` (the runners, the sandbox)."""

RUN_REPOSITORY_JOB = "run_repository_job"  # JobInput -> JobOutput: stage, run in the sandbox, pack, persist
FAIL_REPOSITORY_JOB = "fail_repository_job"  # JobFailure -> None: records the job as failed when the run could not
