// A fetch that records each HTTP round trip of a GraphQL client, for the persisted-query
// scripts (apq_feed.mjs, urql_apq.mjs): {method, status, query: whether it carried the
// document, hash: whether it carried extensions.persistedQuery, codes: the error codes
// answered}, plus whatever `extra()` adds at the time of the request.
export function countingFetch(requests, extra = () => ({})) {
  return async (input, init) => {
    let body = {};
    try {
      if (init?.body) {
        body = JSON.parse(init.body);
      } else {
        // a GET: the operation is in the query string, JSON values as text
        const params = new URL(String(input)).searchParams;
        body = { query: params.get("query") ?? undefined,
                 extensions: JSON.parse(params.get("extensions") ?? "{}") };
      }
    } catch {}
    const entry = extra();
    const response = await fetch(input, init);
    let codes = [];
    try {
      codes = ((await response.clone().json()).errors ?? []).map((e) => e.extensions?.code ?? e.message);
    } catch {}
    requests.push({
      ...entry,
      method: init?.method ?? "GET",
      status: response.status,
      query: typeof body.query === "string",
      hash: !!body.extensions?.persistedQuery,
      codes,
    });
    return response;
  };
}
