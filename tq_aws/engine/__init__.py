"""The engine: the TaskQueue facade, task dispatch and batch processing over the ports."""
