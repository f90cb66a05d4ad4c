// Pages the Hunch feed and sends a mutation as an urql app with Automatic Persisted
// Queries does: @urql/exchange-persisted's persistedExchange before the fetchExchange,
// POST (preferGetForPersistedQueries: false), or with "get" as the last argument urql's
// defaults for queries and hashed queries by GET; mutations persisted too
// (enableForMutation, always POSTed). Counts every HTTP round trip.
//
// Prints one JSON line: {served, mutation, error, requests} (requests as apq_feed.mjs's).
//
// usage: node urql_apq.mjs <graphql url> <bearer token> <pages> <first> [runs] [post|get]
import { countingFetch as makeCountingFetch } from "./counting_fetch.mjs";
import { createHash } from "node:crypto";

import { Client, fetchExchange, gql } from "@urql/core";
import { persistedExchange } from "@urql/exchange-persisted";

const [url, token, pagesArg, firstArg, runsArg, methodArg] = process.argv.slice(2);
const byGet = methodArg === "get";
const pages = Number(pagesArg);
const first = Number(firstArg);
const runs = Number(runsArg ?? 1);
if (!url || !token || !(pages >= 1) || !(first >= 1) || !(runs >= 1)) {
  console.error("usage: node urql_apq.mjs <graphql url> <bearer token> <pages> <first> [runs]");
  process.exit(2);
}

const FEED = gql`
  query Feed($first: Int!, $after: String) {
    feed(first: $first, after: $after) {
      edges { cursor node { id } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
const SEEN = gql`
  mutation Seen($pollIds: [ID!]!) {
    recordImpressions(pollIds: $pollIds) {
      __typename
      ... on Recorded { stored }
    }
  }
`;

const requests = [];
let operation = "query"; // what the client is sending, for the counts
const countingFetch = makeCountingFetch(requests, () => ({ operation }));

const client = new Client({
  url,
  ...(byGet ? {} : { preferGetMethod: false }),
  requestPolicy: "network-only",
  fetch: countingFetch,
  fetchOptions: { headers: { authorization: `Bearer ${token}` } },
  exchanges: [
    persistedExchange({
      preferGetForPersistedQueries: byGet,
      enableForMutation: true,
      generateHash: async (query) => createHash("sha256").update(query).digest("hex"),
    }),
    fetchExchange,
  ],
});

const out = { served: [], mutation: null, error: null, requests };
try {
  for (let run = 0; run < runs; run++) {
    out.served = [];
    let after = null;
    for (let page = 0; page < pages; page++) {
      operation = "query";
      const result = await client.query(FEED, { first, after }).toPromise();
      if (result.error) throw result.error;
      const feed = result.data.feed;
      out.served.push(...feed.edges.map((edge) => edge.node.id));
      if (!feed.pageInfo.hasNextPage) break;
      after = feed.pageInfo.endCursor;
    }
    operation = "mutation";
    const done = await client.mutation(SEEN, { pollIds: out.served.slice(0, 1) }).toPromise();
    if (done.error) throw done.error;
    out.mutation = done.data.recordImpressions;
  }
} catch (error) {
  out.error = String(error?.message ?? error);
}
console.log(JSON.stringify(out));
process.exit(0);
