"""up_reranker.py DATASET [TAG] [KEY=VALUE ...]: UP's linear blend, then a learned
re-ranker of its head: does a non-linear second stage rank the newest events better?

UP ranks the catalog by one linear blend of its components' columns (blend.py; the
history twins are its only per-user interaction). Here, inside ``fit`` and right after
the blend is learned, the same validation users the blend learned from (their newest
events withheld) are ranked by it; each one's head of ``head`` polls becomes a query
for a LambdaMART ranker (LightGBM's ``lambdarank``, NDCG's own gradient) over the
components' columns, the poll's age step, the blend's score and rank, and the user's
history length. Serving (here: the evaluation's ``recommend``) takes the blend's head
the same way and orders it by the ranker. Nothing else changes, so pairing this run
against UP at its defaults (``pair.py DATASET default TAG``) measures the second stage.

Settings (``KEY=VALUE``): head (100), trees (300), leaves (15), rate (0.05),
min_leaf (50), users (drawn: those the blend learned from; all: every validation
user), ages (1: the poll's age step is a feature; 0: not), gate (1: the ranker is kept
only when rankers learned on part of the validation queries rank the rest's heads
better, as the history twins are judged), parts (how many parts that judgement splits
the queries into: 2, halves, both ways round).
"""

from __future__ import annotations

import sys

import numpy as np
from _common import evaluate_up

SETTINGS = {"head": 100, "trees": 300, "leaves": 15, "rate": 0.05, "min_leaf": 50,
            "users": "drawn", "ages": 1, "gate": 0,
            "parts": 2}


def _rows(up, user_id: str, t_ref: float, head: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """The ranker's rows for the user's head (poll indices; by default the blend's top
    ``head`` unseen polls, best first) and those indices."""
    from recsys.recipes.user_personalization import blend

    features, ages = up._features(user_id, t_ref)
    linear = up._combine(features, ages, user_id)
    seen = up.interacted_.get(user_id, np.zeros(0, np.int64))
    if head is None:
        masked = linear.copy()
        masked[seen] = -np.inf
        k = min(SETTINGS["head"], int(np.isfinite(masked).sum()))
        head = np.argsort(-masked, kind="stable")[:k]
    z = blend.history_z(len(seen))
    columns = [features[:, head].T, linear[head], np.arange(len(head)),
               np.full(len(head), z)]
    if SETTINGS["ages"]:
        columns.append(ages[head])
    rows = np.column_stack(columns)
    return rows.astype(np.float32), head


class _User:
    def __init__(self, user_id, relevant):
        self.user_id, self.relevant = user_id, relevant


def _ranker(X, y, groups):
    import lightgbm as lgb

    ranker = lgb.LGBMRanker(objective="lambdarank", n_estimators=SETTINGS["trees"],
                            num_leaves=SETTINGS["leaves"], learning_rate=SETTINGS["rate"],
                            min_child_samples=SETTINGS["min_leaf"], subsample=0.8,
                            subsample_freq=1, colsample_bytree=0.8, random_state=0,
                            n_jobs=1, verbose=-1)
    return ranker.fit(np.vstack(X), np.concatenate(y), group=groups)


def _ndcg10(labels: np.ndarray, order: np.ndarray, relevant: int) -> float:
    gains = labels[order[:10]] / np.log2(np.arange(2, min(10, len(order)) + 2))
    ideal = (1 / np.log2(np.arange(2, min(10, relevant) + 2))).sum()
    return float(gains.sum() / ideal)


def _judged(X, y, groups, relevant) -> tuple[float, float]:
    """NDCG@10 of the validation users' heads, each part ranked by a ranker trained on
    the other parts (``parts`` of them: 2 is halves, both ways round, as the history
    twins are judged), against the blend's own order (a user whose head holds no target
    scores 0 both ways, so only the queries matter)."""
    order = np.random.default_rng(1).permutation(len(groups))
    parts = [order[k::SETTINGS["parts"]] for k in range(SETTINGS["parts"])]
    totals = np.zeros(2)
    for k, rank_for in enumerate(parts):
        learn_on = np.concatenate([p for j, p in enumerate(parts) if j != k])
        ranker = _ranker([X[j] for j in learn_on], [y[j] for j in learn_on],
                         [groups[j] for j in learn_on])
        for j in rank_for:
            blend_order = np.arange(len(y[j]))  # rows are the blend's head, best first
            ranked = np.argsort(-ranker.predict(X[j]), kind="stable")
            totals[0] += _ndcg10(y[j], blend_order, relevant[j])
            totals[1] += _ndcg10(y[j], ranked, relevant[j])
    return float(totals[0]), float(totals[1])


def _train(up, drawn) -> None:
    X, y, groups, relevant = [], [], [], []
    for d in drawn:
        rows, head = _rows(up, d.user_id, float(up.recent_[d.user_id][2][-1]))
        labels = np.isin(head, d.relevant).astype(np.int32)
        if labels.any():  # a query without a target gives lambdarank nothing
            X.append(rows)
            y.append(labels)
            groups.append(len(labels))
            relevant.append(len(np.setdiff1d(d.relevant, up.interacted_[d.user_id])))
    up._reranker = None
    if len(groups) < 20:
        return
    verdict = ""
    if SETTINGS["gate"]:
        without, with_ = _judged(X, y, groups, relevant)
        verdict = f"; held out: blend {without:.2f}, ranker {with_:.2f}"
        if with_ <= without:
            print(f"reranker off ({len(groups)} queries{verdict})", file=sys.stderr,
                  flush=True)
            return
    ranker = _ranker(X, y, groups)
    up._reranker = ranker
    names = [*up._blend_features(), "blend", "rank", "history"] + (
        ["age"] if SETTINGS["ages"] else [])
    gain = ranker.booster_.feature_importance("gain")
    share = ", ".join(f"{n} {g / gain.sum():.2f}" for g, n in sorted(
        zip(gain, names), reverse=True) if g > 0)
    print(f"reranker: {len(groups)} queries with a target in the head of "
          f"{len(drawn)} users{verdict}; gain: {share}", file=sys.stderr, flush=True)


def install() -> None:
    from recsys.recipes.base import ScoredItem
    from recsys.recipes.user_personalization import blend
    from recsys.recipes.user_personalization.model import UserPersonalization
    from recsys.recipes.user_personalization.settings import MIN_VALIDATION_USERS

    learn = blend.learn

    def learn_then_rank(up, users, items, stamps, is_target):
        learn(up, users, items, stamps, is_target)
        # Since session 25 the product has its own re-ranker (components/rerank.py): off
        # here, so this study measures its own second stage over the blend, as it did.
        up.rerank_ = None
        up._reranker = None
        drawn = blend._draw(up, blend.validation_targets(up, users, items, is_target))
        if len(drawn) < MIN_VALIDATION_USERS:
            return
        if SETTINGS["users"] == "all":  # every validation user, not only those drawn
            targets = {}
            for u, i in zip(users[is_target].tolist(), items[is_target].tolist()):
                targets.setdefault(u, set()).add(i)
            drawn = [_User(up.user_ids_[u], np.fromiter(r, np.int64)) for u, r in
                     targets.items() if up.user_ids_[u] in up.recent_]
        _train(up, drawn)

    blend.learn = learn_then_rank
    recommend = UserPersonalization.recommend

    def reranked(self, user_id, n=25, *, now=None, exclude=(), allow=None):
        ranker = getattr(self, "_reranker", None)
        if ranker is None or user_id not in self.recent_:
            return recommend(self, user_id, n, now=now, exclude=exclude, allow=allow)
        base = recommend(self, user_id, max(n, SETTINGS["head"]), now=now,
                         exclude=exclude, allow=allow)
        if not base:
            return base
        head = np.array([self.item_index_[s.item_id] for s in base])
        rows, _ = _rows(self, user_id, self._reference_time(user_id, now), head)
        predicted = ranker.predict(rows)
        order = np.argsort(-predicted, kind="stable")[:n]
        return [ScoredItem(base[j].item_id, float(predicted[j])) for j in order]

    UserPersonalization.recommend = reranked


if __name__ == "__main__":
    dataset, tag = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "reranker"
    for arg in sys.argv[3:]:
        key, value = arg.split("=", 1)
        SETTINGS[key] = type(SETTINGS[key])(value)
    install()
    evaluate_up(dataset, tag)
