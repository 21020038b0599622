"""After registration: the champion at work. Batch scoring (``batch``), drift against the
reference stored with the model (``drift``), and the HTTP server that follows the alias
(``server``, ``batcher``, ``follow``)."""
