"""The query activities' interface, for the workflows that call them: their names, with their input and output
in ``dataapi.messages``. Workflows import this, never ``activities.query`` (which loads DuckDB), so that
starting a workflow (the API) does not load the engine that runs it."""

RUN_QUERY = "run_query"  # QueryInput -> QueryOutput: runs the endpoint's SQL, stores the result, records the job
FINISH_FAILED = "finish_failed"  # FinishInput -> None: records the job as failed when run_query could not
