// Pages the Hunch feed the way a Relay app does (relay-runtime, no React): the screen's
// query, then usePaginationFragment's loadNext (fetch the @refetchable fragment's
// pagination query after the connection's endCursor; ConnectionHandler merges the page
// into the `@connection(key: "FeedList_feed")` record). Then a query whose Me, Author
// and Poll may share an id, to see which records Relay's store makes of them.
// Prints one JSON line: the poll ids (and recommendation ids) each response served, those
// the connection holds, its cursors and pageInfo, Relay's warnings, and the records the
// shared ids became, with Relay's default record ids and with `Type:id` ones.
//
// usage: node relay_feed.mjs <graphql url> <bearer token> <pages> <first> <own poll id>
import {
  Environment, Network, RecordSource, Store, createOperationDescriptor, fetchQuery,
  getSelector,
} from "relay-runtime";
import FeedScreenQuery from "./relay/__generated__/FeedScreenQuery.graphql.js";
import FeedListPaginationQuery from "./relay/__generated__/FeedListPaginationQuery.graphql.js";
import FeedList_query from "./relay/__generated__/FeedList_query.graphql.js";
import ProfileQuery from "./relay/__generated__/ProfileQuery.graphql.js";

const [url, token, pagesArg, firstArg, ownPoll] = process.argv.slice(2);
const pages = Number(pagesArg);
const first = Number(firstArg);
if (!url || !token || !(pages >= 1) || !(first >= 1) || !ownPoll) {
  console.error("usage: node relay_feed.mjs <graphql url> <bearer token> <pages> <first> <own poll id>");
  process.exit(2);
}

// Relay's development warnings (an `after` that is not the connection's endCursor, a
// record normalized with two typenames) go through console.error / console.warn.
const warnings = [];
for (const level of ["error", "warn"]) {
  console[level] = (...args) => warnings.push(args.map(String).join(" ").slice(0, 300));
}

const served = [];
const servedRecommendationIds = [];
const network = Network.create(async (request, variables) => {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: request.text, variables }),
  });
  const body = await response.json();
  for (const edge of body.data?.feed?.edges ?? []) {
    served.push(edge.node.id);
    servedRecommendationIds.push(edge.recommendationId);
  }
  return body;
});
// Relay's default record id is the `id` field alone; an app whose server's ids are
// unique per type only says so with getDataID.
const environments = {
  default: new Environment({ network, store: new Store(new RecordSource()) }),
  typename: new Environment({
    network, store: new Store(new RecordSource()),
    getDataID: (fieldValue, typeName) => `${typeName}:${fieldValue.id}`,
  }),
};

async function load(environment, query, variables) {
  await fetchQuery(environment, query, variables, { fetchPolicy: "network-only" }).toPromise();
  const operation = createOperationDescriptor(query, variables);
  environment.retain(operation); // as a mounted component does: kept, not collected
  return operation;
}

// The feed, in the default environment (what most apps run).
const environment = environments.default;
const screen = await load(environment, FeedScreenQuery, { count: first });
const selector = getSelector(FeedList_query, environment.lookup(screen.fragment).data);
const feed = () => environment.lookup(selector).data.feed;
for (let page = 1; page < pages; page++) {
  const { endCursor, hasNextPage } = feed().pageInfo;
  if (!hasNextPage) break;
  // usePaginationFragment's loadNext: the pagination query after the endCursor
  await load(environment, FeedListPaginationQuery, { count: first, cursor: endCursor });
}
const merged = feed();
const feedWarnings = warnings.splice(0);

// Which records a Me, an Author and a Poll become, in each environment.
const records = {};
const profileWarnings = {};
for (const [name, env] of Object.entries(environments)) {
  const operation = await load(env, ProfileQuery, { pollId: ownPoll });
  const profile = env.lookup(operation.fragment).data;
  const source = env.getStore().getSource();
  const typed = (id) => source.getRecordIDs()
    .map((dataID) => source.get(dataID))
    .filter((r) => r.id === id)
    .map((r) => ({ __dataID: r.__id, __typename: r.__typename }));
  records[name] = { user: typed(profile.me.id), poll: typed(profile.poll.id)[0] };
  profileWarnings[name] = warnings.splice(0);
}

console.log(JSON.stringify({
  served,
  servedRecommendationIds,
  cached: merged.edges.map((e) => e.node.id),
  cachedRecommendationIds: merged.edges.map((e) => e.recommendationId),
  cursors: merged.edges.map((e) => e.cursor),
  pageInfo: merged.pageInfo,
  warnings: { feed: feedWarnings, ...profileWarnings },
  records,
}));
process.exit(0);
