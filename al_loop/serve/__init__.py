"""`al-loop serve`: the run's current model as a Label Studio ML backend, and Label Studio webhooks that drive
the loop (each answer triggers what `al-loop sync` does, debounced, one sync at a time).

Modules: `secret` (the shared secret), `predictor` (the model fitted from the ledger's labels), `worker` (the
background sync), `app` (the HTTP handlers), `connect` (registering the backend and the webhook in Label Studio),
`service` (all of it, started and stopped together).
"""
