"""The callback activity's interface, for the workflows that call it: its name, with its input and output in
``dataapi.messages``. Workflows import this, never ``activities.callbacks`` (the HTTP client, the store)."""

DELIVER_CALLBACK = "deliver_callback"  # AttemptInput -> AttemptOutput: one POST of a result to its callback URL
