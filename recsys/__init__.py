"""The Hunch recommendation engine: datasets, event store, recipes, filters, mixer."""
