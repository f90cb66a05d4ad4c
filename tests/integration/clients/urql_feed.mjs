// Pages the Hunch feed the way an urql app does: @urql/exchange-graphcache with its
// relayPagination() resolver on Query.feed, each page a query with the previous merged
// list's endCursor. Prints one JSON line: the poll ids (and recommendation ids) each
// response served, those the cache's merged list holds afterwards, and its pageInfo.
//
// urql sends queries as GET by default (preferGetMethod: "within-url-limit"), which the
// gateway takes; with "post" as the last argument the client POSTs them instead.
// Each response's method is kept in `methods`.
//
// usage: node urql_feed.mjs <graphql url> <bearer token> <pages> <first> [get|post]
import { Client, fetchExchange, gql } from "@urql/core";
import { cacheExchange } from "@urql/exchange-graphcache";
import { relayPagination } from "@urql/exchange-graphcache/extras";

const [url, token, pagesArg, firstArg, methodArg] = process.argv.slice(2);
const pages = Number(pagesArg);
const first = Number(firstArg);
if (!url || !token || !(pages >= 1) || !(first >= 1)) {
  console.error("usage: node urql_feed.mjs <graphql url> <bearer token> <pages> <first>");
  process.exit(2);
}

const FEED = gql`
  query Feed($first: Int!, $after: String) {
    feed(first: $first, after: $after) {
      edges { cursor recommendationId node { id question } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

const served = [];
const servedRecommendationIds = [];
const methods = [];
const client = new Client({
  url,
  // urql's own default unless told to POST
  ...(methodArg === "post" ? { preferGetMethod: false } : {}),
  fetchOptions: { headers: { authorization: `Bearer ${token}` } },
  // What the server answered, page by page, to compare with what the cache makes of it.
  fetch: async (...args) => {
    methods.push(args[1]?.method ?? "GET");
    const response = await fetch(...args);
    const body = await response.clone().json();
    for (const edge of body.data?.feed?.edges ?? []) {
      served.push(edge.node.id);
      servedRecommendationIds.push(edge.recommendationId);
    }
    return response;
  },
  exchanges: [cacheExchange({ resolvers: { Query: { feed: relayPagination() } } }), fetchExchange],
});

let variables = { first };
let feed = null;
for (let page = 0; page < pages; page++) {
  // Each page from the network; the answer is the cache's, which relayPagination merges
  // from every cached page of the feed (what the app renders).
  const result = await client.query(FEED, variables, { requestPolicy: "network-only" }).toPromise();
  if (result.error) throw result.error;
  feed = result.data.feed;
  if (!feed.pageInfo.hasNextPage) break;
  variables = { first, after: feed.pageInfo.endCursor };
}
// The list as the app's first screen reads it again later: from the cache alone.
const cachedOnly = await client.query(FEED, { first }, { requestPolicy: "cache-only" }).toPromise();
console.log(JSON.stringify({
  served,
  servedRecommendationIds,
  cached: feed.edges.map((edge) => edge.node.id),
  cachedRecommendationIds: feed.edges.map((edge) => edge.recommendationId),
  cachedOnly: cachedOnly.data ? cachedOnly.data.feed.edges.map((edge) => edge.node.id) : null,
  pageInfo: feed.pageInfo,
  methods,
}));
process.exit(0);
