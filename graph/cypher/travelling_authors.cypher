// Whose polls travel beyond their community?
// Authors ranked by the share of the distinct people engaging with their polls who belong
// to another community. Their own engagements do not count; engagers without a community
// label count in engagers but never as outside. min_engagers keeps an author with one
// stray vote from topping the list.
// @param community string = null -- only authors of this community (null: every labelled author)
// @param min_engagers int = 5 -- distinct engagers an author needs to be ranked
// @param limit int = 20 -- how many authors to return
MATCH (a:User)-[:AUTHORED]->(p:Poll)<-[:ENGAGED]-(u:User)
WHERE a.community IS NOT NULL AND u <> a
  AND ($community IS NULL OR a.community = $community)
WITH a, count(DISTINCT p) AS polls, count(DISTINCT u) AS engagers,
     count(DISTINCT CASE WHEN u.community <> a.community THEN u END) AS outside_engagers
WHERE engagers >= $min_engagers
RETURN a.id AS author, a.community AS community, polls, engagers, outside_engagers,
       round(toFloat(outside_engagers) / engagers, 4) AS outside_share
ORDER BY outside_share DESC, outside_engagers DESC, author
LIMIT $limit
