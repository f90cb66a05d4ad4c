"""The analysts' Cypher queries, one ``<name>.cypher`` file per question, shipped as
package data and run by ``graph.analyst_queries`` (``hunch graph query NAME``)."""
