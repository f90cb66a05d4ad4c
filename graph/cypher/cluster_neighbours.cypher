// Who are a user's neighbours in their cluster that they do not follow yet?
// Members of the user's own cluster followed by the people the user follows, ranked by
// how many of those followees lead to them: the in-cluster "people you may know" an
// analyst checks when a user's feed looks thin. through lists up to five of the
// followees in between.
// @param user string -- the user id (User.id)
// @param limit int = 10 -- how many neighbours to return
MATCH (me:User {id: $user})-[:FOLLOWS]->(via:User)-[:FOLLOWS]->(n:User)
WHERE n.cluster = me.cluster AND n <> me AND NOT (me)-[:FOLLOWS]->(n)
WITH n, count(DISTINCT via) AS via_followees, collect(DISTINCT via.id) AS vias
RETURN n.id AS user, via_followees, vias[..5] AS through, n.community AS community
ORDER BY via_followees DESC, user
LIMIT $limit
