"""The online detector on Ray Serve (this package imports nothing heavy; the builder is in :mod:`aptray.serve.app`).

* :mod:`aptray.serve.schemas` -- request and response models (pydantic, shown in OpenAPI);
* :mod:`aptray.serve.parse` -- a request's raw events -> canonical events -> sentences, via the batch parsers;
* :mod:`aptray.serve.auth` -- API keys (env or file) and their constant-time check;
* :mod:`aptray.serve.app` -- the FastAPI ingress deployment, the artifact loader and ``build_app``.
"""
