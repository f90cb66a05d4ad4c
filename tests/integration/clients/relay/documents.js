// The documents a Relay app writes, as relay-compiler reads them (never run: the
// artifacts in __generated__/ are what the scripts import). Regenerate after changing
// them or schema.graphql, from tests/integration/clients/ (relay-compiler is ~120 MB,
// so it is not a dependency):
//   npx --yes relay-compiler@21.0.1 && echo '{"type": "commonjs"}' > relay/__generated__/package.json
// (the artifacts are CommonJS without file extensions in their requires, as bundlers
// take them; the package.json lets Node load them from these ES module scripts).
import { graphql } from "relay-runtime";

// A feed list component's fragment, paginated as usePaginationFragment does it.
graphql`
  fragment FeedList_query on Query
  @argumentDefinitions(count: { type: "Int", defaultValue: 10 }, cursor: { type: "String" })
  @refetchable(queryName: "FeedListPaginationQuery") {
    feed(first: $count, after: $cursor) @connection(key: "FeedList_feed") {
      edges { cursor recommendationId node { id question author { id } } }
      pageInfo { hasNextPage endCursor }
    }
  }
`;

// The screen's query.
graphql`
  query FeedScreenQuery($count: Int!) {
    ...FeedList_query @arguments(count: $count)
  }
`;

// A profile header and a poll detail screen: a Me and an Author share an id (the
// author of the user's own poll is the user).
graphql`
  query ProfileQuery($pollId: ID!) {
    me { id locale }
    poll(id: $pollId) { id question author { id polls(first: 2) { id } } }
  }
`;

// A screen with the feed and a poll: the poll can fail (its read limit) while the feed
// is served, a partial result.
graphql`
  query FeedAndPollQuery($count: Int!, $pollId: ID!) {
    ...FeedList_query @arguments(count: $count)
    poll(id: $pollId) { id question }
  }
`;
