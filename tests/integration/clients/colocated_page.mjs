// One full feed page the way an app built of components asks for it: Apollo Client 4,
// each component's fragment colocated and spread into the page query (a feed item and an
// author card both show the author's latest polls). Apollo adds __typename to every
// selection. Prints one JSON line: the errors, the edges served and, per edge, the
// author's polls and the fields each poll came with.
//
// usage: node colocated_page.mjs <graphql url> <bearer token> <first>
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";

const [url, token, firstArg] = process.argv.slice(2);
const first = Number(firstArg);
if (!url || !token || !(first >= 1)) {
  console.error("usage: node colocated_page.mjs <graphql url> <bearer token> <first>");
  process.exit(2);
}

const FEED_ITEM = gql`
  fragment FeedItem on Poll { id question author { id polls(first: 3) { id } } }
`;
const AUTHOR_CARD = gql`
  fragment AuthorCard on Poll { author { id polls(first: 3) { id question } } }
`;
const PAGE = gql`
  query Page($first: Int!) {
    feed(first: $first) {
      edges { cursor node { id ...FeedItem ...AuthorCard } }
      pageInfo { hasNextPage endCursor }
    }
  }
  ${FEED_ITEM}
  ${AUTHOR_CARD}
`;

const client = new ApolloClient({
  link: new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` } }),
  cache: new InMemoryCache(),
});

const result = await client.query({ query: PAGE, variables: { first }, errorPolicy: "all" });
const edges = result.data?.feed?.edges ?? [];
console.log(JSON.stringify({
  errors: result.error ? String(result.error.message) : null,
  edges: edges.length,
  authorPolls: edges.map((edge) => edge.node.author.polls.map((p) => Object.keys(p).sort())),
}));
process.exit(0);
