// Who are the hubs of a cluster?
// The most-followed users of one cluster, counting only followers from that same cluster:
// a celebrity followed by the whole app but by nobody in the cluster is not its hub.
// all_followers shows how much of a hub's audience is in the cluster.
// @param cluster string -- the cluster label (User.cluster) to look inside
// @param limit int = 10 -- how many hubs to return
MATCH (hub:User {cluster: $cluster})
WITH hub, COUNT { (f:User)-[:FOLLOWS]->(hub) WHERE f.cluster = $cluster } AS in_cluster_followers
WHERE in_cluster_followers > 0
RETURN hub.id AS user,
       in_cluster_followers,
       COUNT { ()-[:FOLLOWS]->(hub) } AS all_followers,
       hub.community AS community
ORDER BY in_cluster_followers DESC, user
LIMIT $limit
