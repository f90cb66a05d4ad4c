// Which polls are popular inside a community?
// Polls engaged with by the most distinct members of one community, optionally only
// counting engagements in a time window [since, until) and of some event types. A member
// who votes and comments counts once in members, twice in engagements. member_share is
// members over the community's size; the author's community tells home-grown polls from
// imported ones.
// @param community string -- the community label (User.community) to look inside
// @param since int = null -- count engagements at or after this epoch second (null: no bound)
// @param until int = null -- count engagements before this epoch second (null: no bound)
// @param event_types list = null -- only these event types, e.g. HUNCH,COMMENT (null: all)
// @param limit int = 10 -- how many polls to return
MATCH (m:User {community: $community})
WITH count(m) AS community_size
MATCH (u:User {community: $community})-[e:ENGAGED]->(p:Poll)
WHERE ($since IS NULL OR e.at >= $since)
  AND ($until IS NULL OR e.at < $until)
  AND ($event_types IS NULL OR e.type IN $event_types)
WITH community_size, p, count(DISTINCT u) AS members, count(e) AS engagements
ORDER BY members DESC, engagements DESC, p.id
LIMIT $limit
OPTIONAL MATCH (author:User)-[:AUTHORED]->(p)
RETURN p.id AS poll, members, engagements,
       round(toFloat(members) / community_size, 4) AS member_share,
       author.id AS author, author.community AS author_community
ORDER BY members DESC, engagements DESC, poll
