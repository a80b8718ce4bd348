"""aptray: find Advanced Persistent Threats in system logs with sentence embeddings and autoencoders on Ray.

Importing the package is cheap: no torch, no Ray start, no files written.
"""

__version__ = "0.1.0"
