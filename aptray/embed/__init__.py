"""The embedding stage: sentences -> fixed-size vectors, each distinct sentence encoded once.

Modules (import the one you need; this package imports nothing heavy):

* :mod:`aptray.embed.registry` -- model names and local directories -> :class:`~aptray.embed.registry.ModelSpec`;
* :mod:`aptray.embed.encoder` -- :class:`~aptray.embed.encoder.SentenceEncoder`, an in-process encoder with an
  LRU by sentence (online serving, batch scoring);
* :mod:`aptray.embed.cache` -- the persistent content-addressed embedding cache (Parquet shards);
* :mod:`aptray.embed.job` -- the Ray Data actor-pool UDF and the ``aptray embed`` job.
"""
