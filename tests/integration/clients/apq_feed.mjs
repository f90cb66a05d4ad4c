// Pages the Hunch feed as an app with Automatic Persisted Queries does: Apollo Client 4
// with PersistedQueryLink (sha256 from Node's crypto) before its HttpLink, and
// relayStylePagination. Then sends a mutation (recordImpressions of the first poll)
// through the same link. Counts every HTTP round trip and what each one carried.
//
// Prints one JSON line: {served, cached, mutation, error, mutationError, requests}, where requests is
// one entry per HTTP request: {status, query: whether it carried the document, hash:
// whether it carried extensions.persistedQuery, codes: the error codes answered}.
//
// usage: node apq_feed.mjs <graphql url> <bearer token> <pages> <first> [runs] [poll id] [get]
// With "get", hashed queries go by GET (useGETForHashedQueries, as Apollo Kotlin's
// persisted queries do by default); documents and mutations are POSTed.
// With runs > 1 the same client pages the feed again (a second screen of the app): the
// hashes are known by then, so each request should be one round trip without the query.
import { countingFetch as makeCountingFetch } from "./counting_fetch.mjs";
import { createHash } from "node:crypto";

import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { relayStylePagination } from "@apollo/client/utilities";

const [url, token, pagesArg, firstArg, runsArg, pollArg, methodArg] = process.argv.slice(2);
const pages = Number(pagesArg);
const first = Number(firstArg);
const runs = Number(runsArg ?? 1);
if (!url || !token || !(pages >= 1) || !(first >= 1) || !(runs >= 1)) {
  console.error("usage: node apq_feed.mjs <graphql url> <bearer token> <pages> <first> [runs]");
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
      ... on InvalidInputError { message }
      ... on UnknownPollError { message }
    }
  }
`;

const requests = [];
const countingFetch = makeCountingFetch(requests);

const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const link = new PersistedQueryLink({ sha256, useGETForHashedQueries: methodArg === "get" }).concat(
  new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` }, fetch: countingFetch }),
);

const ids = (feed) => feed.edges.map((edge) => edge.node.id);
const out = { served: [], cached: [], mutation: null, error: null, mutationError: null, requests };

async function pageOnce(client) {
  const served = [];
  const observable = client.watchQuery({ query: FEED, variables: { first } });
  const firstPage = await new Promise((resolve, reject) => {
    const subscription = observable.subscribe({
      next: (result) => {
        if (result.error) reject(result.error);
        else if (!result.loading && result.data) resolve(result.data.feed);
      },
      error: reject,
    });
    process.on("exit", () => subscription.unsubscribe());
  });
  served.push(...ids(firstPage));
  for (let page = 1; page < pages; page++) {
    const merged = client.readQuery({ query: FEED, variables: { first } }).feed;
    const { endCursor, hasNextPage } = merged.pageInfo;
    if (!hasNextPage) break;
    const more = await observable.fetchMore({ variables: { after: endCursor } });
    if (more.error) throw more.error;
    served.push(...ids(more.data.feed));
  }
  return served;
}

for (let run = 0; run < runs; run++) {
  // A new cache each run (an app started again), the same link (its hash cache).
  const client = new ApolloClient({
    link,
    cache: new InMemoryCache({
      typePolicies: { Query: { fields: { feed: relayStylePagination() } } },
    }),
  });
  try {
    out.served = await pageOnce(client);
    out.cached = ids(client.readQuery({ query: FEED, variables: { first } }).feed);
  } catch (error) {
    out.error = String(error?.message ?? error);
  }
  // The mutation is sent whether the feed worked or not (a poll id of the demo data
  // when the feed served none): each is its own measurement.
  try {
    const pollIds = out.served.length ? out.served.slice(0, 1) : [pollArg ?? "p1"];
    const done = await client.mutate({ mutation: SEEN, variables: { pollIds } });
    if (done.error) throw done.error;
    out.mutation = done.data.recordImpressions;
  } catch (error) {
    out.mutationError = String(error?.message ?? error);
  }
}
console.log(JSON.stringify(out));
process.exit(0);
