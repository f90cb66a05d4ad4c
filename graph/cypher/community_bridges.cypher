// Who bridges communities?
// Users whose follows mostly leave their own community, a cheap stand-in for betweenness
// that needs no GDS and no full-graph pass per user: outside_share is the share of the
// user's follows that go to other communities, communities_reached how many distinct
// ones. min_follows keeps users who follow two people from topping the list.
// @param community string = null -- only members of this community (null: everyone labelled)
// @param min_follows int = 5 -- follows a user needs to be ranked
// @param limit int = 20 -- how many users to return
MATCH (u:User)-[:FOLLOWS]->(v:User)
WHERE u.community IS NOT NULL AND v.community IS NOT NULL
  AND ($community IS NULL OR u.community = $community)
WITH u, count(v) AS follows,
     count(CASE WHEN v.community <> u.community THEN 1 END) AS outside,
     collect(DISTINCT CASE WHEN v.community <> u.community THEN v.community END) AS reached
WHERE follows >= $min_follows
RETURN u.id AS user, u.community AS community, follows, outside,
       round(toFloat(outside) / follows, 4) AS outside_share,
       size(reached) AS communities_reached
ORDER BY outside_share DESC, communities_reached DESC, user
LIMIT $limit
