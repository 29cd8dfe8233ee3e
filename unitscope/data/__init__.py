"""The readers of a published DB that the Python API and the server share, over any Source."""
