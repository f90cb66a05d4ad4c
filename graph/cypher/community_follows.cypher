// Which communities follow each other?
// Pairs of communities with follows in both directions, normalised by how much each
// community follows anyone: share_a_to_b is the share of all follows made by members of
// community_a that go to members of community_b. mutual_share, the smaller of the two
// shares, ranks pairs where each side gives the other a real part of its attention, so a
// big community does not top the list just by being big.
// @param community string = null -- only pairs that include this community (null: every pair)
// @param min_follows int = 1 -- follows each way a pair needs to be listed
// @param limit int = 20 -- how many pairs to return
MATCH (a:User)-[:FOLLOWS]->(b:User)
WHERE a.community IS NOT NULL AND b.community IS NOT NULL
WITH a.community AS source, b.community AS target, count(*) AS follows
WITH source, sum(follows) AS follows_made, collect({target: target, follows: follows}) AS flows
UNWIND flows AS flow
WITH source, flow.target AS target, flow.follows AS follows,
     toFloat(flow.follows) / follows_made AS share
WHERE source <> target
  AND ($community IS NULL OR $community IN [source, target])
// Fold both directions of a pair onto one row, the smaller label first.
WITH CASE WHEN source < target THEN [source, target] ELSE [target, source] END AS pair,
     source < target AS forward, follows, share
WITH pair,
     sum(CASE WHEN forward THEN follows ELSE 0 END) AS follows_a_to_b,
     sum(CASE WHEN forward THEN 0 ELSE follows END) AS follows_b_to_a,
     sum(CASE WHEN forward THEN share ELSE 0.0 END) AS share_a_to_b,
     sum(CASE WHEN forward THEN 0.0 ELSE share END) AS share_b_to_a
WHERE follows_a_to_b >= $min_follows AND follows_b_to_a >= $min_follows
RETURN pair[0] AS community_a, pair[1] AS community_b,
       follows_a_to_b, follows_b_to_a,
       round(share_a_to_b, 4) AS share_a_to_b, round(share_b_to_a, 4) AS share_b_to_a,
       round(CASE WHEN share_a_to_b < share_b_to_a THEN share_a_to_b ELSE share_b_to_a END, 4)
         AS mutual_share
ORDER BY mutual_share DESC, community_a, community_b
LIMIT $limit
