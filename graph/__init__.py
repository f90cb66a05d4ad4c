"""The follower graph: stores (Neo4j and in-process), analytics, Neo4j server tooling."""
