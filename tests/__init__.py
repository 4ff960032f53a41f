"""emwatch tests: a regular package, so that no installed top-level `tests` (gmqtt ships one) shadows it."""
