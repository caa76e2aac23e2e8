"""Serving a trained student: a Ray Serve application with a FastAPI ingress, batching and a web page.

- ``settings``: :class:`~c2s.serve.settings.ServeSettings`, the one typed object an application is built from;
- ``inputs``: checking what a client sent (class names, image bytes, options) -> 4xx answers naming the field;
- ``engine``: the replica's work without Ray (Segmenter, text cache per class list, batches, PNG/JSON answers);
- ``app``: the Ray Serve deployment and its FastAPI routes, ``@serve.batch``; ``build`` for ``serve deploy``;
- ``run``: ``c2s serve`` (start, preflight, deploy, wait) and ``--write-config``; ``page.html``: the web page.

Ray is imported only by ``app`` and ``run`` (inside functions there): the rest runs and is tested without it.
"""
