// What Apollo Client, Relay and urql make of the gateway's errors (HTTP 200, each error
// with extensions.code): the code the app can read, and what each cache keeps.
// Scenarios (the server runs with a small feed and read limit and a short session):
//   unauthenticated  a first page with a bad token
//   expired          a page, the session's lifetime, the next page
//   rate-limited     pages until the feed limit refuses one (its burst is 10)
//   partial          the feed and a poll in one query, the poll over its read limit
//                    (the caller spent it first)
// Prints one JSON line: per scenario, the codes surfaced, whether data was null, and
// the poll ids the client's merged feed holds afterwards (null: none cached).
//
// usage: node client_errors.mjs <apollo|relay|urql> <graphql url> <scenario> <token> <first> <poll id> <session seconds>
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { relayStylePagination } from "@apollo/client/utilities";
import { Client, fetchExchange } from "@urql/core";
import { cacheExchange } from "@urql/exchange-graphcache";
import { relayPagination } from "@urql/exchange-graphcache/extras";
import {
  Environment, Network, RecordSource, Store, createOperationDescriptor, fetchQuery,
  getSelector,
} from "relay-runtime";
import FeedScreenQuery from "./relay/__generated__/FeedScreenQuery.graphql.js";
import FeedListPaginationQuery from "./relay/__generated__/FeedListPaginationQuery.graphql.js";
import FeedAndPollQuery from "./relay/__generated__/FeedAndPollQuery.graphql.js";
import FeedList_query from "./relay/__generated__/FeedList_query.graphql.js";

const [clientName, url, scenario, token, firstArg, pollId, ttlArg] = process.argv.slice(2);
const first = Number(firstArg);
const ttl = Number(ttlArg);
for (const level of ["error", "warn"]) console[level] = () => {}; // Relay's dev warnings

const FEED = gql`
  query Feed($first: Int!, $after: String) {
    feed(first: $first, after: $after) {
      edges { cursor recommendationId node { id } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;
const FEED_AND_POLL = gql`
  query FeedAndPoll($first: Int!, $pollId: ID!) {
    feed(first: $first) {
      edges { cursor recommendationId node { id } }
      pageInfo { hasNextPage endCursor }
    }
    poll(id: $pollId) { id question }
  }
`;
const POLL = gql`query Poll($pollId: ID!) { poll(id: $pollId) { id question } }`;
const codesOf = (errors) => (errors ?? []).map((e) => e.extensions?.code ?? null);
const ids = (feed) => (feed ? feed.edges.map((e) => e.node.id) : null);

// Each client as an app uses it: page(after) asks the next page (the first when after is
// null) and answers { codes, data }; merged() is the feed list the app renders from its
// cache; feedAndPoll() the partial screen; cachedPoll() the poll read from cache alone.
function apollo() {
  const client = new ApolloClient({
    link: new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` } }),
    cache: new InMemoryCache({
      typePolicies: { Query: { fields: { feed: relayStylePagination() } } },
    }),
  });
  const run = async (query, variables) => {
    try { // errorPolicy "none" (the default): any error rejects, with the response's errors
      const result = await client.query({ query, variables, fetchPolicy: "network-only" });
      return { codes: [], data: result.data ?? null };
    } catch (error) {
      return { codes: codesOf(error.errors), data: error.data ?? null };
    }
  };
  return {
    page: (after) => run(FEED, after ? { first, after } : { first }),
    merged: () => ids(client.readQuery({ query: FEED, variables: { first } })?.feed),
    feedAndPoll: () => run(FEED_AND_POLL, { first, pollId }),
    cachedPoll: () => client.readQuery({ query: POLL, variables: { pollId } }),
  };
}

function urql() {
  const client = new Client({
    url, preferGetMethod: false,
    fetchOptions: { headers: { authorization: `Bearer ${token}` } },
    exchanges: [cacheExchange({ resolvers: { Query: { feed: relayPagination() } } }),
      fetchExchange],
  });
  const run = async (query, variables) => {
    const result = await client.query(query, variables, { requestPolicy: "network-only" })
      .toPromise();
    return { codes: codesOf(result.error?.graphQLErrors), data: result.data ?? null };
  };
  const cacheOnly = async (query, variables) =>
    (await client.query(query, variables, { requestPolicy: "cache-only" }).toPromise()).data ?? null;
  return {
    page: (after) => run(FEED, after ? { first, after } : { first }),
    merged: async () => ids((await cacheOnly(FEED, { first }))?.feed),
    feedAndPoll: () => run(FEED_AND_POLL, { first, pollId }),
    cachedPoll: () => cacheOnly(POLL, { pollId }),
  };
}

function relay() {
  let lastErrors = null;
  const network = Network.create(async (request, variables) => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ query: request.text, variables }),
    });
    const body = await response.json();
    lastErrors = body.errors ?? null;
    return body;
  });
  const environment = new Environment({ network, store: new Store(new RecordSource()) });
  let selector = null;
  const run = async (query, variables) => {
    try {
      await fetchQuery(environment, query, variables, { fetchPolicy: "network-only" }).toPromise();
    } catch (error) { // data null: Relay rejects, the response is the error's `source`
      return { codes: codesOf(error.source?.errors), data: null };
    }
    const operation = createOperationDescriptor(query, variables);
    environment.retain(operation);
    const data = environment.lookup(operation.fragment).data;
    if (query !== FeedListPaginationQuery) selector = getSelector(FeedList_query, data);
    // Field errors of a partial result: Relay keeps them in the store for @catch and
    // @throwOnFieldError; a plain read gets null. The app sees them in the response.
    return { codes: codesOf(lastErrors), data };
  };
  return {
    page: (after) => (after
      ? run(FeedListPaginationQuery, { count: first, cursor: after })
      : run(FeedScreenQuery, { count: first })),
    merged: () => (selector ? ids(environment.lookup(selector).data?.feed) : null),
    mergedPageInfo: () => environment.lookup(selector).data.feed.pageInfo,
    feedAndPoll: () => run(FeedAndPollQuery, { count: first, pollId }),
    cachedPoll: () => {
      const operation = createOperationDescriptor(FeedAndPollQuery, { count: first, pollId });
      const snapshot = environment.lookup(operation.fragment);
      return { poll: snapshot.data?.poll ?? null, missing: snapshot.isMissingData };
    },
  };
}

const app = { apollo, relay, urql }[clientName]();
const out = { scenario, steps: [] };
const step = async (label, answer) => {
  out.steps.push({ label, codes: answer.codes, dataNull: answer.data == null,
    merged: await app.merged() });
  return answer;
};
// The next page's `after`: the merged list's endCursor (Relay's query data holds a
// fragment reference, so its connection is read).
const cursorAfter = (answer) => answer.data?.feed?.pageInfo?.endCursor
  ?? app.mergedPageInfo().endCursor;

if (scenario === "unauthenticated") {
  await step("first page", await app.page(null));
} else if (scenario === "expired") {
  const one = await step("first page", await app.page(null));
  const cursor = cursorAfter(one);
  await new Promise((resolve) => setTimeout(resolve, (ttl + 1) * 1000));
  await step("after the session expired", await app.page(cursor));
  await step("the feed again", await app.page(null));
} else if (scenario === "rate-limited") {
  let answer = await step("page 1", await app.page(null));
  for (let page = 2; page <= 20 && answer.codes.length === 0; page++) {
    answer = await step(`page ${page}`, await app.page(cursorAfter(answer)));
  }
} else if (scenario === "partial") {
  const answer = await app.feedAndPoll();
  out.steps.push({ label: "feed and poll", codes: answer.codes,
    dataNull: answer.data == null, feed: answer.data ? "served" : null,
    poll: answer.data?.poll ?? null, merged: await app.merged() });
  out.cachedPoll = await app.cachedPoll();
}

console.log(JSON.stringify(out));
process.exit(0);
