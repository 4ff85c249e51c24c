"""Session orchestration: the chain runner, its events and their renderers."""
