"""The composition root: settings, CLI, and the GraphQL gateway that wires recsys + graph."""
