// Pages the Hunch feed the way a mobile/web client does: Apollo Client 4 with
// relayStylePagination and fetchMore. Prints one JSON line: the poll ids each response
// served, in order, and the poll ids the cache holds for the feed afterwards.
//
// usage: node page_feed.mjs <graphql url> <bearer token> <pages> <first>
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { relayStylePagination } from "@apollo/client/utilities";

const [url, token, pagesArg, firstArg] = process.argv.slice(2);
const pages = Number(pagesArg);
const first = Number(firstArg);
if (!url || !token || !(pages >= 1) || !(first >= 1)) {
  console.error("usage: node page_feed.mjs <graphql url> <bearer token> <pages> <first>");
  process.exit(2);
}

// Only fields the schema has had from the start, so the same script measures any version.
const FEED = gql`
  query Feed($first: Int!, $after: String) {
    feed(first: $first, after: $after) {
      edges { cursor node { id } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

const client = new ApolloClient({
  link: new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` } }),
  cache: new InMemoryCache({
    typePolicies: { Query: { fields: { feed: relayStylePagination() } } },
  }),
});

const ids = (feed) => feed.edges.map((edge) => edge.node.id);
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
  // After the merged list's endCursor, as an app does with its query's data. Read from
  // the cache: the watcher's own copy is updated only on a later tick.
  const merged = client.readQuery({ query: FEED, variables: { first } }).feed;
  const { endCursor, hasNextPage } = merged.pageInfo;
  if (!hasNextPage) break;
  const more = await observable.fetchMore({ variables: { after: endCursor } });
  if (more.error) throw more.error;
  served.push(...ids(more.data.feed));
}

const cached = client.readQuery({ query: FEED, variables: { first } });
console.log(JSON.stringify({ served, cached: ids(cached.feed) }));
process.exit(0);
