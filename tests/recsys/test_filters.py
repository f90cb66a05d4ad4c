"""Personalize filter expressions: every documented example, errors, limits, semantics."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.filters import (
    MAX_EXPRESSION_LENGTH,
    Catalog,
    FilterContext,
    FilterNotApplicable,
    InvalidCatalogRecord,
    InvalidFilterExpression,
    InvalidFilterValues,
    MissingFilterValue,
    SegmentContext,
    compile_filter,
    parse_filter,
    parse_filter_values,
)
from recsys.schemas import ITEMS

ALL = ["i1", "i2", "i3", "i4", "i5"]


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(
        {
            "i1": {"ITEM_ID": "i1", "CATEGORY": "shoe", "CATEGORY_L1": "shoe",
                   "CATEGORY_L2": "boot", "DESCRIPTION": "boot", "GENRE": "drama",
                   "PRICE": 50.0, "NUMBER_OF_DOWNLOADS": 10, "CREATION_TIMESTAMP": 100},
            "i2": {"ITEM_ID": "i2", "CATEGORY": "shoe|sale", "CATEGORY_L1": "shoe",
                   "CATEGORY_L2": "sandal", "DESCRIPTION": "summer", "GENRE": "comedy|drama",
                   "PRICE": 20.0, "NUMBER_OF_DOWNLOADS": 30, "CREATION_TIMESTAMP": 200},
            "i3": {"ITEM_ID": "i3", "CATEGORY": "watch", "CATEGORY_L1": "watch",
                   "DESCRIPTION": "luxury", "GENRE": "comedy", "PRICE": 500.0,
                   "NUMBER_OF_DOWNLOADS": 5, "CREATION_TIMESTAMP": 300},
            "i4": {"ITEM_ID": "i4", "CATEGORY": "watch", "DESCRIPTION": "sport",
                   "GENRE": "horror", "PRICE": 80.0, "NUMBER_OF_DOWNLOADS": 25,
                   "CREATION_TIMESTAMP": 400},
            "i5": {"ITEM_ID": "i5", "CATEGORY": "NSFW", "GENRE": "drama", "PRICE": None,
                   "CREATION_TIMESTAMP": 500},
        }
    )


EVENTS = {"click": ["i1"], "stream": ["i3"], "favorite": ["i4"]}


def kept(catalog, expression, values=None, user=None, events=EVENTS, candidates=ALL):
    ctx = FilterContext(catalog, current_user=user or {}, recent_events=events)
    return compile_filter(expression).apply(list(candidates), ctx, values)


# Personalize developer guide: item recommendation filter examples (and the older
# "Filter expression examples" page), plus the Hunch app's own.
ITEM_EXAMPLES = [
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($EVENT_TYPE)',
     {"EVENT_TYPE": '"click"'}, None, ["i2", "i3", "i4", "i5"]),
    ('EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")',
     None, None, ["i2", "i4", "i5"]),
    ('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")', None, None, ["i1"]),
    ('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', None, None, ["i1", "i3", "i4"]),
    ('EXCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY)',
     {"CATEGORY": '"shoe"'}, None, ["i3", "i4", "i5"]),
    ('EXCLUDE ItemID WHERE Items.CATEGORY_L1 IN ("shoe") AND Items.CATEGORY_L2 NOT IN ("boot")',
     None, None, ["i1", "i3", "i4", "i5"]),
    ('INCLUDE ItemID WHERE Items.PRICE <= $PRICE', {"PRICE": '"80"'}, None, ["i1", "i2", "i4"]),
    ('INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP < $DATE', {"DATE": "300"}, None, ["i1", "i2"]),
    ('INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)', {"GENRE": '"comedy"'}, None, ["i2", "i3"]),
    ('EXCLUDE ItemID WHERE Items.GENRE IN ($GENRE) IF CurrentUser.AGE = $AGE',
     {"GENRE": '"drama"', "AGE": '"30"'}, {"AGE": 30}, ["i3", "i4"]),
    ('EXCLUDE ItemID WHERE Items.GENRE IN ($GENRE) IF CurrentUser.AGE = $AGE',
     {"GENRE": '"drama"', "AGE": '"30"'}, {"AGE": 20}, ALL),
    ('EXCLUDE ItemID WHERE Items.CATEGORY IN ("shoe") AND Items.DESCRIPTION NOT IN ("boot")',
     None, None, ["i1", "i3", "i4", "i5"]),
    ('INCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS < 20', None, None, ["i1", "i3"]),
    ('EXCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS < 20 IF CurrentUser.AGE > 18 AND '
     'CurrentUser.AGE < 30', None, {"AGE": 25}, ["i2", "i4", "i5"]),
    ('EXCLUDE ItemID WHERE Items.NUMBER_OF_DOWNLOADS < 20 IF CurrentUser.AGE > 18 AND '
     'CurrentUser.AGE < 30', None, {"AGE": 40}, ALL),
    ('INCLUDE ItemID WHERE Items.CATEGORY IN ("watch") AND Items.DESCRIPTION IN ("luxury") '
     'IF CurrentUser.AGE > 18', None, {"AGE": 25}, ["i3"]),
    ('INCLUDE ItemID WHERE Items.CATEGORY IN ("watch") AND Items.DESCRIPTION IN ("luxury") '
     'IF CurrentUser.AGE > 18', None, {"AGE": 12}, ALL),
    ('INCLUDE ItemID WHERE Items.GENRE IN ("drama") | '
     'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")',
     None, None, ["i2", "i5"]),
    ('INCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY) | '
     'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("favorite")',
     {"CATEGORY": '"shoe"'}, None, ["i1", "i2", "i4"]),
    ('INCLUDE ItemID WHERE Items.GENRE IN ($GENRE) | '
     'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click", "stream")',
     {"GENRE": '"comedy"'}, None, ["i2"]),
    # Hunch's own
    ('INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP > $SINCE', {"SINCE": '"250"'}, None,
     ["i3", "i4", "i5"]),
    ('EXCLUDE ItemID WHERE Items.CATEGORY IN ("NSFW") IF CurrentUser.AGE < 18', None,
     {"AGE": 15}, ["i1", "i2", "i3", "i4"]),
    ('EXCLUDE ItemID WHERE Items.CATEGORY IN ("NSFW") IF CurrentUser.AGE < 18', None,
     {"AGE": 30}, ALL),
    ('INCLUDE ItemID WHERE Items.CATEGORY IN ($C) | '
     'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")',
     {"C": '"shoe","NSFW"'}, None, ["i2", "i5"]),
]


@pytest.mark.parametrize("expression,values,user,expected", ITEM_EXAMPLES)
def test_documented_item_examples_filter_correctly(catalog, expression, values, user, expected):
    assert kept(catalog, expression, values, user) == expected


def test_hunch_interaction_types_match_case_insensitively(catalog):
    events = {"hunch": ["i1"], "Comment": ["i2"], "IMPRESSION_ONLY": ["i3"]}
    expression = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("HUNCH", "COMMENT")'
    assert kept(catalog, expression, events=events) == ["i3", "i4", "i5"]
    by_param = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($T)'
    assert kept(catalog, by_param, {"T": '"Hunch"'}, events=events) == ["i2", "i3", "i4", "i5"]


def test_star_matches_every_event_type(catalog):
    events = {"HUNCH": ["i1"], "whatever": ["i5"]}
    assert kept(catalog, 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")',
                events=events) == ["i2", "i3", "i4"]


def test_only_the_last_100_interactions_per_type_count(catalog):
    many = {f"old{i}": {"CATEGORY": "x"} for i in range(150)}
    catalog.upsert(many)
    history = [f"old{i}" for i in range(150)]  # oldest first
    out = kept(catalog, 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")',
               events={"click": history}, candidates=history)
    assert out == history[:50]


def test_documented_user_segment_examples(catalog):
    users = Catalog({
        "u1": {"USER_ID": "u1", "MEMBERSHIP_STATUS": "gold", "AGE": 30},
        "u2": {"USER_ID": "u2", "MEMBERSHIP_STATUS": "silver", "AGE": 16},
        "u3": {"USER_ID": "u3", "MEMBERSHIP_STATUS": "gold|vip", "AGE": 45},
        "u4": {"USER_ID": "u4"},
    })
    ctx = SegmentContext(users, users_by_event_type={"click": ["u1"], "RATING": ["u3"]})
    everyone = ["u1", "u2", "u3", "u4"]
    cases = [
        ('INCLUDE UserID WHERE Users.MEMBERSHIP_STATUS IN ($MEMBERSHIP)',
         {"MEMBERSHIP": '"gold"'}, ["u1", "u3"]),
        ('EXCLUDE UserID WHERE Users.AGE < $AGE', {"AGE": '"18"'}, ["u1", "u3", "u4"]),
        ('INCLUDE UserID WHERE Interactions.EVENT_TYPE IN ("click", "rating")', None,
         ["u1", "u3"]),
        ('EXCLUDE UserID WHERE Interactions.EVENT_TYPE IN ($EVENT_TYPE)',
         {"EVENT_TYPE": '"click"'}, ["u2", "u3", "u4"]),
    ]
    for expression, values, expected in cases:
        assert compile_filter(expression).apply(everyone, ctx, values) == expected, expression
    with pytest.raises(FilterNotApplicable):
        compile_filter(cases[0][0]).apply(everyone, FilterContext(catalog), cases[0][1])


@pytest.mark.parametrize(
    "expression,position,fragment",
    [
        ('EXCLUDE ItemID WHERE Items.CATEGORY INN ("x")', 37,
         "expected IN, NOT IN or a comparison operator, found 'INN'"),
        ('INCLUDES ItemID WHERE Items.CATEGORY IN ("x")', 1, "expected INCLUDE or EXCLUDE"),
        ('INCLUDE Item WHERE Items.CATEGORY IN ("x")', 9, "expected ItemID or UserID"),
        ('INCLUDE ItemID Items.CATEGORY IN ("x")', 16, "expected WHERE"),
        ('INCLUDE ItemID WHERE Items CATEGORY IN ("x")', 28, "expected '.' after Items"),
        ('INCLUDE ItemID WHERE Item.CATEGORY IN ("x")', 22, "expected Items or Interactions"),
        ('INCLUDE ItemID WHERE Items.CATEGORY IN "x"', 40, "expected '(' after IN"),
        ('INCLUDE ItemID WHERE Items.CATEGORY IN ("x" "y")', 45, "expected ',' or ')'"),
        ('INCLUDE ItemID WHERE Items.CATEGORY IN ("x', 41, "unterminated string"),
        ('INCLUDE ItemID WHERE Items.CATEGORY IN ()', 41, "expected a quoted value"),
        ('INCLUDE ItemID WHERE Items.PRICE < "abc"', 36, "expected a number or a $PARAMETER"),
        ('INCLUDE ItemID WHERE Items.CATEGORY IN ("x") |', 47, "found the end"),
        ('INCLUDE ItemID WHERE Items.CATEGORY IN ("x") EXTRA', 46, "'|' followed by"),
        ('INCLUDE ItemID WHERE Items.CATEGORY IN ("x") # y', 46, "unexpected character '#'"),
        ('INCLUDE ItemID WHERE Items.CATEGORY IN ($)', 41, "needs a name after '$'"),
    ],
)
def test_malformed_expressions_name_position_and_expectation(expression, position, fragment):
    with pytest.raises(InvalidFilterExpression) as err:
        parse_filter(expression)
    assert err.value.position == position
    assert f"at position {position}: " in str(err.value)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    "expression,fragment",
    [
        ('INCLUDE ItemID WHERE Items.CATEGORY NOT IN ($C)', "NOT IN takes quoted values"),
        ('INCLUDE ItemID WHERE Items.CATEGORY IN ("x") AND Interactions.EVENT_TYPE IN ("a")',
         "must stay on the first condition's dataset"),
        ('INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("a") OR Items.GENRE IN ("x")',
         "chain an expression on Items with '|'"),
        ('INCLUDE ItemID WHERE Interactions.ITEM_ID IN ("a")', "only be filtered by EVENT_TYPE"),
        ('INCLUDE ItemID WHERE Interactions.EVENT_TYPE > 3', "takes IN or NOT IN"),
        ('INCLUDE ItemID WHERE Users.AGE > 3', "ItemID filters cannot use the Users dataset"),
        ('INCLUDE ItemID WHERE CurrentUser.AGE > 3', "only appear in the IF clause"),
        ('INCLUDE UserID WHERE Items.GENRE IN ("x")', "UserID filters cannot use the Items"),
        ('INCLUDE UserID WHERE Users.AGE > 3 IF CurrentUser.AGE > 3', "item filters only"),
        ('INCLUDE ItemID WHERE Items.AGE > 3 IF CurrentUser.AGE > 3 OR CurrentUser.AGE < 1',
         "only be joined with AND"),
        ('INCLUDE ItemID WHERE Items.PRICE < CurrentItem.PRICE', "related-items"),
        ('INCLUDE ItemID WHERE Items.GENRE IN ("a") | EXCLUDE UserID WHERE Users.A IN ("b")',
         "cannot be chained"),
        ('INCLUDE ActionID WHERE Actions.X IN ("a")', "Actions dataset"),
        ("", "empty"),
    ],
)
def test_documented_rules_are_enforced_with_clear_messages(expression, fragment):
    with pytest.raises(InvalidFilterExpression) as err:
        compile_filter(expression)
    assert fragment in str(err.value)


def test_expression_length_limit():
    values = ", ".join(f'"v{i:04d}"' for i in range(200))
    base = f"INCLUDE ItemID WHERE Items.CATEGORY IN ({values})"
    pad = MAX_EXPRESSION_LENGTH - len(base) - 2
    fits = base[:-1] + ', "' + "x" * (pad - 2) + '")'
    assert len(fits) == MAX_EXPRESSION_LENGTH
    compile_filter(fits)
    too_long = fits[:-2] + 'y")'
    with pytest.raises(InvalidFilterExpression, match="at most 2500"):
        compile_filter(too_long)


def test_at_most_25_parameters():
    conds = " OR ".join(f"Items.F{i} IN ($P{i})" for i in range(26))
    with pytest.raises(InvalidFilterExpression, match="26 parameters.*at most 25"):
        compile_filter(f"INCLUDE ItemID WHERE {conds}")
    compile_filter("INCLUDE ItemID WHERE " + " OR ".join(
        f"Items.F{i} IN ($P{i})" for i in range(25)))


def test_schema_check_rejects_unknown_textual_and_mistyped_fields():
    with pytest.raises(InvalidFilterExpression, match="GENRE is not a field.*CATEGORY"):
        compile_filter('INCLUDE ItemID WHERE Items.GENRE IN ("x")', items_schema=ITEMS)
    with pytest.raises(InvalidFilterExpression, match="textual"):
        compile_filter('INCLUDE ItemID WHERE Items.QUESTION IN ("x")', items_schema=ITEMS)
    with pytest.raises(InvalidFilterExpression, match="not numeric"):
        compile_filter('INCLUDE ItemID WHERE Items.CATEGORY > 3', items_schema=ITEMS)
    compile_filter('INCLUDE ItemID WHERE Items.CREATION_TIMESTAMP > 3', items_schema=ITEMS)


def test_parameters_report_which_are_required():
    f = compile_filter('INCLUDE ItemID WHERE Items.GENRE IN ($G) | '
                       'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($E)')
    assert {(p.name, p.required) for p in f.parameters} == {("G", True), ("E", False)}


def test_missing_include_parameter_is_an_error(catalog):
    with pytest.raises(MissingFilterValue, match=r"\$GENRE"):
        kept(catalog, 'INCLUDE ItemID WHERE Items.GENRE IN ($GENRE)')


def test_missing_exclude_parameter_drops_only_its_condition(catalog):
    expression = 'EXCLUDE ItemID WHERE Items.CATEGORY IN ($C) AND Items.PRICE > 30'
    assert kept(catalog, expression, {"C": '"watch"'}) == ["i1", "i2", "i5"]
    assert kept(catalog, expression) == ["i2", "i5"]  # only PRICE > 30 excludes
    assert kept(catalog, 'EXCLUDE ItemID WHERE Items.CATEGORY IN ($C)') == ALL


def test_request_values_are_individually_quoted():
    assert parse_filter_values("C", '"comedy","drama"') == ("comedy", "drama")
    assert parse_filter_values("C", ' "a, b" , "say \\"hi\\"" ') == ("a, b", 'say "hi"')
    assert parse_filter_values("N", "1700000000") == ("1700000000",)
    for bad in ("comedy", '"comedy",', '"a" "b"', "", '"a",drama'):
        with pytest.raises(InvalidFilterValues):
            parse_filter_values("C", bad)


def test_bad_request_values_are_refused(catalog):
    f = compile_filter('INCLUDE ItemID WHERE Items.PRICE < $P')
    ctx = FilterContext(catalog)
    with pytest.raises(InvalidFilterValues, match="one number"):
        f.apply(ALL, ctx, {"P": '"1","2"'})
    with pytest.raises(InvalidFilterValues, match="must be a number"):
        f.apply(ALL, ctx, {"P": '"cheap"'})
    with pytest.raises(InvalidFilterValues, match=r"no parameter \$Q; its parameters: \$P"):
        f.apply(ALL, ctx, {"P": "3", "Q": "4"})
    with pytest.raises(InvalidFilterValues, match="at most 25"):
        f.apply(ALL, ctx, {f"K{i}": '"x"' for i in range(26)})


def test_pipe_chaining_semantics(catalog):
    # exclude ∪ exclude
    assert kept(catalog, 'EXCLUDE ItemID WHERE Items.GENRE IN ("horror") | '
                'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")') == ["i2", "i3", "i5"]
    # order does not matter: (include) minus (exclude)
    a = kept(catalog, 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("stream") | '
             'INCLUDE ItemID WHERE Items.CATEGORY IN ("watch")')
    b = kept(catalog, 'INCLUDE ItemID WHERE Items.CATEGORY IN ("watch") | '
             'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("stream")')
    assert a == b == ["i4"]


def test_and_binds_tighter_than_or(catalog):
    expression = ('INCLUDE ItemID WHERE Items.GENRE IN ("horror") OR '
                  'Items.CATEGORY IN ("shoe") AND Items.PRICE < 30')
    assert kept(catalog, expression) == ["i2", "i4"]


def test_missing_values_and_unknown_items(catalog):
    # i5 has no PRICE: no comparison matches it, NOT IN does; unknown ids behave alike.
    candidates = ALL + ["ghost"]
    assert kept(catalog, 'INCLUDE ItemID WHERE Items.PRICE != 20',
                candidates=candidates) == ["i1", "i3", "i4"]
    assert kept(catalog, 'INCLUDE ItemID WHERE Items.CATEGORY_L1 NOT IN ("shoe")',
                candidates=candidates) == ["i3", "i4", "i5", "ghost"]
    assert kept(catalog, 'EXCLUDE ItemID WHERE Items.CATEGORY IN ("NSFW") IF CurrentUser.AGE < 18',
                user={}) == ALL  # age unknown: the IF cannot hold


def test_current_user_categorical_condition(catalog):
    expression = 'INCLUDE ItemID WHERE Items.GENRE IN ("comedy") IF CurrentUser.LOCALE IN ($L)'
    assert kept(catalog, expression, {"L": '"fr"'}, user={"LOCALE": "en|fr"}) == ["i2", "i3"]
    assert kept(catalog, expression, {"L": '"fr"'}, user={"LOCALE": "de"}) == ALL


def test_indices_in_indices_out_and_masks(catalog):
    f = compile_filter('INCLUDE ItemID WHERE Items.GENRE IN ("drama")')
    ctx = FilterContext(catalog)
    rows = catalog.indices(["i5", "i3", "i1", "nope"])
    assert rows.tolist() == [4, 2, 0, -1]
    assert f.apply(rows, ctx).tolist() == [4, 0]
    assert f.mask(["i5", "i3", "i1"], ctx).tolist() == [True, False, True]


def test_catalog_takes_new_and_changed_polls(catalog):
    f = compile_filter('INCLUDE ItemID WHERE Items.CATEGORY IN ("watch")')
    ctx = FilterContext(catalog)
    assert f.apply(ALL + ["i6"], ctx) == ["i3", "i4"]
    catalog.upsert({"i6": {"CATEGORY": "watch", "PRICE": 1.0},
                    "i3": {"CATEGORY": "shoe", "PRICE": 500.0}})
    assert f.apply(ALL + ["i6"], ctx) == ["i4", "i6"]
    cheap = compile_filter('INCLUDE ItemID WHERE Items.PRICE < 30')
    assert cheap.apply(ALL + ["i6"], ctx) == ["i2", "i6"]
    # growth past the initial capacity keeps old rows intact
    catalog.upsert({f"n{i}": {"CATEGORY": "bulk", "PRICE": float(i)} for i in range(3000)})
    assert f.apply(ALL + ["i6", "n5"], ctx) == ["i4", "i6"]
    assert cheap.apply(["i2", "n5", "n29", "n30", "n2999"], ctx) == ["i2", "n5", "n29"]


def test_catalog_refuses_text_in_numeric_field():
    with pytest.raises(InvalidCatalogRecord, match="CREATION_TIMESTAMP is numeric"):
        Catalog({"p": {"CREATION_TIMESTAMP": "yesterday"}}, schema=ITEMS)


def test_comparison_on_categorical_field_is_refused_at_apply(catalog):
    with pytest.raises(FilterNotApplicable, match="categorical; compare it with IN"):
        kept(catalog, 'INCLUDE ItemID WHERE Items.GENRE > 3')


def test_mask_is_numpy_bool_and_memoised_masks_stay_intact(catalog):
    f = compile_filter('INCLUDE ItemID WHERE Items.GENRE IN ("drama")')
    ctx = FilterContext(catalog)
    first = f.mask(np.arange(5), ctx)
    assert first.dtype == bool
    first[:] = False  # callers may scribble on their result
    assert f.mask(np.arange(5), ctx).tolist() == [True, True, False, False, True]
