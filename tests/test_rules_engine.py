"""The earning rules engine (issue #3) through the Python API: test vectors T1, T2, T11, T12,
T16 (REQUIREMENTS.md), caps at local day/month/year boundaries with an injected clock, campaign
budgets under 16 concurrent threads, tiers, referral ordering, dry-run explanations, invalid
rules naming the bad field, and a hypothesis property: posted credits equal the dry run and the
ledger audit passes."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import pypoints as pp
from pypoints import rules as r
from tests.conftest import T0, setup_programme

CNY = 100
CST = timezone(timedelta(hours=8))
HOUR = 3_600_000
DAY = 24 * HOUR


def local(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> int:
    """UTC ms of a China Standard Time wall-clock time (the default programme time zone)."""
    return pp.to_ms(datetime(y, m, d, h, mi, tzinfo=CST))


def rule(id: str, action: r.Action, *kinds: str, **kw: object) -> r.Rule:
    return r.Rule("p", id, action, "pts", kinds=kinds, **kw)  # type: ignore[arg-type]


@pytest.fixture
def shop(ledger: pp.Ledger) -> pp.Ledger:
    setup_programme(ledger, "p", ("pts",), ("a", "b", "c"))
    return ledger


class Ids:
    n = 0

    def __call__(self, prefix: str = "e") -> str:
        Ids.n += 1
        return f"{prefix}{Ids.n}"


new_id = Ids()


def earn(ledger: pp.Ledger, kind: str, member: str, amount: int = 0, *, at: int | None = None,
         **kw: object) -> r.EarnResult:
    return ledger.earn(r.Event(new_id(), kind, member, amount, **kw), at=at)  # type: ignore[arg-type]


# ----- test vectors -----

def test_t1_er1_deposit_amount_times_term(shop: pp.Ledger) -> None:
    shop.define_rule(rule("deposit", r.AmountTerm(16, 10_000 * CNY, 365), "deposit"))
    got = [earn(shop, "deposit", "a", cny * CNY, term_days=days).points
           for cny, days in [(10_000, 365), (50_000, 365), (10_000, 3 * 365)]]
    assert got == [16, 80, 48]
    assert shop.balance("a", "pts").total == 144


def test_t2_er2_insurance_10000_gives_5(shop: pp.Ledger) -> None:
    shop.define_rule(rule("insurance", r.Rate(5, 10_000 * CNY), "insurance"))
    assert earn(shop, "insurance", "a", 10_000 * CNY).points == 5


def test_t11_spend_388_gives_388(shop: pp.Ledger) -> None:
    shop.define_rule(rule("spend", r.Rate(1, CNY), "purchase"))
    assert earn(shop, "purchase", "a", 388 * CNY).points == 388


def test_t12_er5_ex7_floor_and_effective_next_day(shop: pp.Ledger) -> None:
    shop.define_rule(rule("card", r.Rate(1, CNY), "card_spend", pending=True))
    at = local(2024, 5, 10, 15)
    res = earn(shop, "card_spend", "a", 9_999, at=at)
    assert res.points == 99
    assert [(lot.rule, lot.version, lot.points) for lot in res.lots] == [("card", 1, 99)]
    b = shop.balance("a", "pts", at=at)
    assert (b.total, b.available, b.pending) == (99, 0, 99)
    assert shop.balance("a", "pts", at=local(2024, 5, 11)).available == 99


def test_t16_er17_checkin_bonus_on_7th_day_missed_day_resets(shop: pp.Ledger) -> None:
    shop.define_rule(rule("checkin", r.Checkin(daily=5, streak=7, bonus=50), "checkin"))
    days = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15]
    got = [earn(shop, "checkin", "a", at=local(2024, 6, d, 8)).points for d in days]
    assert got == [5, 5, 5, 5, 5, 5, 55, 5, 5, 5, 5, 5, 5, 55]
    assert earn(shop, "checkin", "a", at=local(2024, 6, 15, 20)).points == 0  # once a day
    assert shop.rule_state("a")["streak"] == 7


def test_er24_quiz_5_questions_times_10(shop: pp.Ledger) -> None:
    shop.define_rule(rule("quiz", r.Rate(10, 1), "quiz", max_award=50, caps=(r.Cap("day", 50),)))
    assert earn(shop, "quiz", "a", 5).points == 50
    res = earn(shop, "quiz", "a", 5)
    assert res.points == 0 and res.zero == ["quiz"]


# ----- caps with an injected clock (ER-30, RK-1) -----

def test_er30_caps_cut_at_local_day_month_year_boundaries(shop: pp.Ledger, clock) -> None:  # type: ignore[no-untyped-def]
    caps = (r.Cap("day", 100), r.Cap("month", 150), r.Cap("year", 300))
    shop.define_rule(rule("spend", r.Rate(1, CNY), "purchase", caps=caps))
    clock.now = local(2024, 1, 31, 23, 0)
    first = earn(shop, "purchase", "a", 120 * CNY)
    assert first.points == 100 and first.capped
    assert first.cuts == [("spend", "rule:spend:day", 20)]
    clock.now = local(2024, 2, 1, 0, 0)  # new local day and month (still Jan 31 in UTC)
    assert earn(shop, "purchase", "a", 120 * CNY).points == 100
    clock.now = local(2024, 2, 2)
    res = earn(shop, "purchase", "a", 120 * CNY)
    assert res.points == 50
    assert res.cuts == [("spend", "rule:spend:day", 20), ("spend", "rule:spend:month", 50)]
    clock.now = local(2024, 12, 31, 23, 59)  # 250 so far this year
    res = earn(shop, "purchase", "a", 120 * CNY)
    assert res.points == 50 and res.cuts[-1] == ("spend", "rule:spend:year", 50)
    assert earn(shop, "purchase", "a", 10 * CNY).zero == ["spend"]
    clock.now = local(2025, 1, 1)
    assert earn(shop, "purchase", "a", 120 * CNY).points == 100


def test_er30_programme_caps_across_rules(shop: pp.Ledger) -> None:
    shop.define_rule(rule("spend", r.Rate(1, CNY), "purchase"))
    shop.define_rule(rule("bonus", r.Fixed(50), "purchase"))
    shop.set_earn_policy("p", caps=(r.Cap("day", 120),), id="policy-1")
    res = earn(shop, "purchase", "a", 100 * CNY)
    assert res.points == 120 and res.cuts == [("spend", "programme:day", 30)]


# ----- campaigns and budgets (CP-1..5, CP-13) -----

def test_cp1_double_points_campaign_with_budget(shop: pp.Ledger) -> None:
    shop.define_rule(rule("spend", r.Rate(1, CNY), "purchase"))
    shop.define_campaign(r.Campaign("p", "double-may", local(2024, 5, 1), local(2024, 6, 1), budget=300, budget_type="pts"))
    shop.define_rule(rule("double", r.Multiplier(2), "purchase", campaign="double-may"))
    res = earn(shop, "purchase", "a", 200 * CNY, at=local(2024, 5, 18))
    assert [(lot.rule, lot.points) for lot in res.lots] == [("spend", 200), ("double", 200)]
    res = earn(shop, "purchase", "b", 200 * CNY, at=local(2024, 5, 18))
    assert res.points == 300 and res.cuts == [("double", "budget:double-may", 100)]
    assert earn(shop, "purchase", "c", 200 * CNY, at=local(2024, 6, 1)).points == 200  # ended
    s = shop.campaign_status("p", "double-may")
    assert (s.budget, s.granted, s.left) == (300, 300, 0)
    assert shop.audit().ok


def test_cp_budget_never_exceeded_with_16_threads(tmp_path, open_ledger) -> None:  # type: ignore[no-untyped-def]
    """16 threads earn concurrently against a 5,000-point campaign budget: exactly the budget
    is granted, never more (the budget is a bounded account debited in the same write)."""
    ledger = open_ledger(tmp_path / "d")
    members = tuple(f"m{i}" for i in range(32))
    setup_programme(ledger, "p", ("pts",), members)
    ledger.define_campaign(r.Campaign("p", "rush", T0 - DAY, T0 + DAY, budget=5_000, budget_type="pts"))
    ledger.define_rule(rule("rush", r.Rate(1, CNY), "purchase", campaign="rush"))
    totals = [0] * 16
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(10):
                batch = [r.Earn.of(r.Event(f"t{t}-{i}-{j}", "purchase", members[(t + i + j) % 32], (10 + j) * CNY))
                         for j in range(5)]
                for res in ledger.submit(batch):
                    assert isinstance(res, pp.Receipt), res
                    totals[t] += res.amount
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert sum(totals) == 5_000
    assert sum(ledger.balance(m, "pts").total for m in members) == 5_000
    assert ledger.campaign_status("p", "rush").left == 0
    assert ledger.audit().ok


# ----- tiers (TL-1..5) -----

TIERS = r.Tiers("p", (r.TierLevel("ordinary", 0), r.TierLevel("silver", 1_000), r.TierLevel("gold", 5_000, 2, 1)),
                point_type="pts", window_months=12)


def test_tl1_tl2_tl4_upgrade_multiplier_downgrade_and_override(shop: pp.Ledger) -> None:
    assert shop.tiers(shop.member("a").programme) is None, "no tiers until they are defined"
    shop.define_tiers(TIERS, id="tiers-1")
    stored = shop.tiers(shop.member("a").programme)
    assert stored is not None and stored.version == 1 and stored.levels == TIERS.levels and stored.basis == TIERS.basis
    with pytest.raises(pp.UnknownProgramme):
        shop.tiers("no-such-programme")
    shop.define_rule(rule("spend", r.Rate(1, CNY), "purchase"))
    at = local(2024, 5, 1)
    res = earn(shop, "purchase", "a", 1_000 * CNY, at=at)
    assert res.tier_change == ("ordinary", "silver")
    shop.redeem("spend-1", "a", 900, at=at)  # earned, not balance
    earn(shop, "purchase", "a", 4_000 * CNY, at=at)
    assert shop.member("a").tier == "gold"
    res = earn(shop, "purchase", "a", 100 * CNY, at=at)
    assert [(lot.rule, lot.points) for lot in res.lots] == [("spend", 100), ("tier:gold", 100)]
    # Operator override survives evaluation; clearing it returns to automatic.
    shop.set_tier("b", "gold", id="counter-upgrade", reason="TL-9")
    assert shop.evaluate_tiers("eval-1", "p", at=local(2025, 7, 1)) == 1  # a: gold → ordinary
    assert (shop.member("a").tier, shop.member("b").tier) == ("ordinary", "gold")
    shop.set_tier("b", None, id="auto-again")
    assert shop.member("b").tier == "ordinary"


# ----- referral (ER-15) -----

def test_er15_referral_both_credited_only_on_first_purchase(shop: pp.Ledger) -> None:
    shop.define_rule(rule("ref", r.Referral(inviter=200, invitee=100), "purchase"))
    with pytest.raises(pp.InvalidArgument, match="event.attrs.referrer"):
        earn(shop, "signup", "b", attrs=(("referrer", "ghost"),))
    assert earn(shop, "signup", "b", attrs=(("referrer", "a"),)).points == 0
    assert shop.balance("a", "pts").total == 0
    res = earn(shop, "purchase", "b", 10 * CNY)
    assert [(lot.member, lot.points) for lot in res.lots] == [("b", 100), ("a", 200)]
    assert earn(shop, "purchase", "b", 10 * CNY).points == 0
    notes = shop.dry_run(r.Event("x", "purchase", "b", 10 * CNY)).notes
    assert notes[0].reason == "the referral was already paid"


def test_er15_er30_inviter_award_is_cut_by_the_inviters_own_caps(shop: pp.Ledger) -> None:
    shop.define_rule(rule("ref", r.Referral(inviter=200, invitee=100), "purchase",
                          caps=(r.Cap("day", 300),)))
    shop.set_earn_policy("p", caps=(r.Cap("day", 250),), id="policy-ref")
    for m in ("b", "c"):
        earn(shop, "signup", m, attrs=(("referrer", "a"),))
    day = T0 + DAY
    assert earn(shop, "purchase", "b", 10 * CNY, at=day).points == 300
    # a's second inviter award: the rule's day cap leaves 100, a's programme day cap 50.
    res = earn(shop, "purchase", "c", 10 * CNY, at=day)
    assert [(lot.member, lot.points) for lot in res.lots] == [("c", 100), ("a", 50)]
    assert res.cuts == [("ref", "rule:ref:day", 100), ("ref", "programme:day", 50)]
    assert shop.balance("a", "pts").total == 250


# ----- conditions, stacking, dry run, versions, validation -----

def test_er31_conditions_and_dry_run_explanations(shop: pp.Ledger) -> None:
    when = r.All(r.Any_(r.Channel("app"), r.Merchant("m-1")), r.Not(r.Category("tobacco")),
                 r.Weekdays(1, 2, 3, 4, 5), r.TimeOfDay(9 * 60, 18 * 60), r.Org("Shandong"),
                 r.Amount(min=10 * CNY), r.Tier("ordinary"), r.Group("individual"),
                 r.Attr("card", ("gold",)), r.AttrRange("age", 18, 60),
                 r.Between(local(2024, 1, 1), local(2025, 1, 1)))
    shop.define_rule(rule("promo", r.Fixed(10), "purchase", when=when))
    ok = dict(channel="app", org=("Shandong", "Qingdao"), attrs=(("card", "gold"), ("age", "30")))
    monday = local(2024, 5, 13, 10)
    assert earn(shop, "purchase", "a", 20 * CNY, at=monday, **ok).points == 10
    d = shop.dry_run(r.Event("x", "purchase", "a", 20 * CNY, **{**ok, "channel": "web"}), at=monday)  # type: ignore[arg-type]
    assert d.total == 0 and d.notes[0].reason == "when.all[0].any: no alternative holds"
    d = shop.dry_run(r.Event("x", "purchase", "a", 20 * CNY, **ok), at=monday + 5 * DAY)  # type: ignore[arg-type]
    assert d.notes[0].reason.startswith("when.all[2].weekdays: weekday 6")
    d = shop.dry_run(r.Event("x", "purchase", "a", 20 * CNY, **ok), at=monday + 9 * HOUR)  # type: ignore[arg-type]
    assert d.notes[0].reason.startswith("when.all[3].time_of_day")


def test_stacking_priority_exclusive_and_version_history(shop: pp.Ledger) -> None:
    shop.define_rule(rule("base", r.Rate(1, CNY), "purchase", priority=1))
    shop.define_rule(rule("partner", r.Rate(3, CNY), "purchase", priority=9, stacking="exclusive",
                          when=r.Merchant("partner")))
    assert earn(shop, "purchase", "a", 100 * CNY).points == 100
    d = shop.dry_run(r.Event("x", "purchase", "a", 100 * CNY, merchant="partner"))
    assert [(n.rule, n.fired) for n in d.notes] == [("partner", True), ("base", False)]
    assert "exclusive rule \"partner\" fired first" in d.notes[1].reason
    assert shop.update_rule(rule("base", r.Rate(2, CNY), "purchase", priority=1), id="base-v2") == 2
    res = earn(shop, "purchase", "a", 100 * CNY)
    assert [(lot.rule, lot.version, lot.points) for lot in res.lots] == [("base", 2, 200)]
    assert [x.version for x in shop.rule_versions("p", "base")] == [1, 2]
    assert shop.disable_rule("p", "base", id="base-off") == 3
    current = {x.id: x for x in shop.rules("p")}
    assert current["base"].enabled is False and current["partner"].when == r.Merchant("partner")
    assert earn(shop, "purchase", "a", 100 * CNY).points == 0


@pytest.mark.parametrize("bad, field", [
    (rule("x", r.Rate(0, CNY)), "rule.action.rate.points"),
    (rule("x", r.Rate(1, CNY), when=r.All(r.Amount(5, 1))), "rule.when.all[0].amount"),
    (rule("x", r.Rate(1, CNY), when=r.Not(r.Weekdays(9))), "rule.when.not.weekdays"),
    (rule("x", r.Rate(1, CNY), caps=(r.Cap("week", 5),)), "rule.caps[0].window"),  # type: ignore[arg-type]
    (rule("x", r.Rate("1", CNY)), "rule.action.rate.points"),  # type: ignore[arg-type]
    (r.Rule("p", "x", r.Fixed(1), "nope"), "rule.point_type"),
    (rule("x", r.Fixed(1), campaign="nope"), "rule.campaign"),
    (rule("x", r.Multiplier(1, 1)), "rule.action.multiplier.num"),
])
def test_invalid_rules_are_refused_naming_the_field(shop: pp.Ledger, bad: r.Rule, field: str) -> None:
    with pytest.raises(pp.InvalidRule) as e:
        shop.define_rule(bad)
    assert str(e.value).startswith(field), str(e.value)
    assert isinstance(e.value, pp.InvalidArgument)
    assert shop.rules("p") == []


def test_earn_is_idempotent_by_event_id(shop: pp.Ledger) -> None:
    shop.define_rule(rule("spend", r.Rate(1, CNY), "purchase"))
    ev = r.Event("pos-1", "purchase", "a", 50 * CNY)
    first = shop.earn(ev)
    again = shop.earn(ev)
    assert again.replayed and again.points == first.points == 50
    with pytest.raises(pp.IdempotencyConflict):
        shop.earn(r.Event("pos-1", "purchase", "a", 60 * CNY))
    assert shop.balance("a", "pts").total == 50


# ----- property: dry run == posted, audit passes -----

conds = st.sampled_from([None, r.Channel("app"), r.Amount(min=5_000), r.Not(r.Channel("web")),
                         r.Any_(r.Weekdays(1, 3, 5), r.TimeOfDay(20 * 60, 6 * 60)), r.FirstPurchase()])
actions = st.one_of(st.builds(r.Rate, st.integers(1, 3), st.sampled_from([1, 100, 1_000])),
                    st.builds(r.Fixed, st.integers(1, 100)),
                    st.builds(r.Multiplier, st.integers(3, 4), st.just(2)),
                    st.builds(r.Checkin, st.integers(1, 9), st.integers(2, 3), st.integers(0, 30)))
rule_specs = st.lists(st.tuples(actions, conds, st.integers(-2, 2), st.booleans(),
                                st.one_of(st.none(), st.integers(20, 300)), st.booleans()), min_size=1, max_size=5)
events = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["purchase", "checkin"]),
                            st.integers(0, 20_000), st.sampled_from(["app", "web", "pos"]),
                            st.integers(0, 36 * 60)), min_size=1, max_size=20)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(specs=rule_specs, evs=events, budget=st.integers(50, 1_500))
def test_property_posted_equals_dry_run_and_audit_passes(tmp_path_factory, specs, evs, budget) -> None:  # type: ignore[no-untyped-def]
    with pp.Ledger(tmp_path_factory.mktemp("prop") / "d") as ledger:
        setup_programme(ledger, "p", ("pts",), ("a", "b", "c"))
        ledger.define_campaign(r.Campaign("p", "camp", T0, T0 + 30 * DAY, budget=budget, budget_type="pts"), at=T0)
        ledger.define_tiers(TIERS, id="tiers", at=T0)
        for i, (action, when, prio, excl, cap, in_camp) in enumerate(specs):
            ledger.define_rule(rule(f"r{i}", action, "purchase", "checkin", when=when, priority=prio,
                                    stacking="exclusive" if excl else "stackable",
                                    caps=() if cap is None else (r.Cap("day", cap),),
                                    campaign="camp" if in_camp else None), at=T0)
        at = T0
        for k, (m, kind, amount, channel, minutes) in enumerate(evs):
            at += minutes * 60_000
            ev = r.Event(f"ev{k}", kind, m, amount, channel=channel)
            d = ledger.dry_run(ev, at=at)
            res = ledger.earn(ev, at=at)
            assert res.points == d.total
            assert [(lot.rule, lot.version, lot.member, lot.points) for lot in res.lots] == \
                [(a.rule, a.version, a.member, a.points) for a in d.awards if a.points > 0]
        report = ledger.audit()
        assert report.ok, report.problems
        assert ledger.campaign_status("p", "camp").left >= 0
