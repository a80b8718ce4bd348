"""Readers: one module per source, each returning a ``ray.data.Dataset`` in :data:`aptray.schema.EVENT_SCHEMA`."""
