"""Running step DAGs: the executor, what a step sees, and recording progress."""
