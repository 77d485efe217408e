"""RuleService over the rules engine (issue #3 through issue #4): define, version, disable and
list rules; campaigns; tiers; earn (idempotent) and dry-run; INVALID_RULE naming the field;
role checks (admin defines, upstream earns, auditor reads)."""

from __future__ import annotations

import grpc
import msgpack

from grpc_support import Client, Server, admin, expect_error, seed, server  # noqa: F401
from pypoints import rules as r
from pypoints.v1 import ledger_pb2 as L
from pypoints.v1 import rules_pb2 as R
from pypoints.v1 import rules_pb2_grpc

S = grpc.StatusCode
CNY = 100


def stub(c: Client) -> rules_pb2_grpc.RuleServiceStub:
    return rules_pb2_grpc.RuleServiceStub(c.channel)


def body(rule: r.Rule) -> R.RuleBody:
    return R.RuleBody(programme=rule.programme, rule_id=rule.id, body=rule.pack())


def event(rid: str, member: str = "m1", amount: int = 50 * CNY, **kw: object) -> R.EarnRequest:
    return R.EarnRequest(event=R.EarnEvent(request_id=rid, kind="purchase", member_id=member, amount=amount, **kw))  # type: ignore[arg-type]


def test_rules_versions_earn_and_dry_run(admin: Client, server: Server) -> None:
    seed(admin)
    s = stub(admin)
    spend = r.Rule("p", "spend", r.Rate(1, CNY), "general", kinds=("purchase",))
    assert admin.call(s, "DefineRule", R.DefineRuleRequest(request_id="rule.spend.1", rule=body(spend))).version == 1
    assert admin.call(s, "DefineRule", R.DefineRuleRequest(request_id="rule.spend.1", rule=body(spend))).version == 1  # replay
    app = r.Rule("p", "app", r.Fixed(7), "bonus", kinds=("purchase",), when=r.Channel("app"))
    admin.call(s, "DefineRule", R.DefineRuleRequest(request_id="rule.app.1", rule=body(app)))
    dry = admin.call(s, "DryRun", event("dry-1", channel="web"))
    assert dry.points == 50 and {n.rule_id: n.fired for n in dry.notes} == {"spend": True, "app": False}
    assert admin.call(admin.ledger, "GetBalances", L.GetBalancesRequest(member_id="m1")).balances[0].total == 0
    e1 = admin.call(s, "Earn", event("pos-1", channel="app", attrs={"store": "s1"}))
    assert (e1.points, e1.replayed) == (57, False)
    assert sorted((x.rule_id, x.points) for x in e1.lots) == [("app", 7), ("spend", 50)]
    again = admin.call(s, "Earn", event("pos-1", channel="app", attrs={"store": "s1"}))
    assert again.replayed and again.points == 57 and again.seq == e1.seq
    expect_error(admin.call, s, "Earn", event("pos-1", amount=1), code=S.ALREADY_EXISTS, reason="IDEMPOTENCY_CONFLICT")
    double = r.Rule("p", "spend", r.Rate(2, CNY), "general", kinds=("purchase",))
    assert admin.call(s, "UpdateRule", R.DefineRuleRequest(request_id="rule.spend.2", rule=body(double))).version == 2
    versions = admin.call(s, "ListRuleVersions", R.ListRuleVersionsRequest(programme="p", rule_id="spend")).rules
    assert [v.version for v in versions] == [1, 2]
    assert r.Rule.from_wire(msgpack.unpackb(versions[1].body)).action == r.Rate(2, CNY)
    assert admin.call(s, "DisableRule", R.DisableRuleRequest(request_id="off", programme="p", rule_id="app")).version == 2
    seen, token = [], ""
    while True:
        page = admin.call(s, "ListRules", R.ListRulesRequest(programme="p", page_size=1, page_token=token))
        seen += [(x.rule_id, x.version) for x in page.rules]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == [("app", 2), ("spend", 2)]
    assert server.app.ledger.audit().ok


def test_campaigns_tiers_and_errors(admin: Client, server: Server) -> None:
    seed(admin)
    s = stub(admin)
    now = server.clock.now
    rc = admin.call(s, "DefineCampaign", R.DefineCampaignRequest(request_id="camp.x", programme="p", campaign_id="x",
                                                                  start=now, end=now + 86_400_000, budget=1_000,
                                                                  budget_type="general", name="launch"))
    assert rc.seq > 0 and not rc.replayed
    st = admin.call(s, "GetCampaignStatus", R.GetCampaignStatusRequest(programme="p", campaign_id="x"))
    assert (st.budget, st.granted, st.left) == (1_000, 0, 1_000)
    none = admin.call(s, "ListTiers", R.ListTiersRequest(programme="p"))
    assert (none.version, none.body) == (0, b""), "no tiers yet: version 0, empty body"
    tiers = r.Tiers("p", (r.TierLevel("ordinary", 0), r.TierLevel("gold", 1_000, 3, 2)), point_type="bonus")
    assert admin.call(s, "DefineTiers", R.DefineTiersRequest(request_id="tiers.1", programme="p", body=tiers.pack())).version == 1
    silver = r.Tiers("p", (r.TierLevel("ordinary", 0), r.TierLevel("silver", 500), r.TierLevel("gold", 1_000, 3, 2)),
                     point_type="bonus")
    assert admin.call(s, "DefineTiers", R.DefineTiersRequest(request_id="tiers.2", programme="p", body=silver.pack())).version == 2
    listed = admin.call(s, "ListTiers", R.ListTiersRequest(programme="p"))
    got = r.Tiers.from_wire(msgpack.unpackb(listed.body))
    assert listed.version == got.version == 2 and got.levels == silver.levels and got.point_type == "bonus"
    expect_error(admin.call, s, "ListTiers", R.ListTiersRequest(programme="nope"), code=S.NOT_FOUND, reason="UNKNOWN_PROGRAMME")
    expect_error(admin.call, s, "ListTiers", R.ListTiersRequest(), code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT",
                 field="programme")
    w = r.Rule("p", "bad", r.Rate(1, CNY), "general").wire()
    w["action"]["rate"]["points"] = 0
    bad = R.RuleBody(programme="p", rule_id="bad", body=msgpack.packb(w))
    expect_error(admin.call, s, "DefineRule", R.DefineRuleRequest(request_id="bad.1", rule=bad),
                 code=S.INVALID_ARGUMENT, reason="INVALID_RULE", field="rule.action.rate.points")
    expect_error(admin.call, s, "DefineRule", R.DefineRuleRequest(request_id="bad.2", rule=R.RuleBody(body=b"\x01")),
                 code=S.INVALID_ARGUMENT, reason="INVALID_RULE", field="rule.body")
    expect_error(admin.call, s, "UpdateRule", R.DefineRuleRequest(request_id="up.1", rule=body(r.Rule("p", "ghost", r.Fixed(1), "general"))),
                 code=S.NOT_FOUND, reason="UNKNOWN_RULE")
    expect_error(admin.call, s, "Earn", event("e.ghost", member="ghost"), code=S.NOT_FOUND, reason="UNKNOWN_MEMBER")
    expect_error(admin.call, s, "ListRules", R.ListRulesRequest(programme="p", page_token="zz"),
                 code=S.INVALID_ARGUMENT, reason="INVALID_ARGUMENT", field="page_token")


def test_rule_roles(admin: Client, server: Server) -> None:
    """RL-7: only admins define rules and campaigns; upstream systems earn; auditors read;
    operators earn for members in their subtree."""
    seed(admin)
    spend = r.Rule("p", "spend", r.Rate(1, CNY), "general", kinds=("purchase",))
    admin.call(stub(admin), "DefineRule", R.DefineRuleRequest(request_id="rule.spend.1", rule=body(spend)))
    up, aud, op = server.client("upstream"), server.client("auditor"), server.client("operator", "Jiangsu")
    assert up.call(stub(up), "Earn", event("up-1")).points == 50
    assert aud.call(stub(aud), "ListRules", R.ListRulesRequest(programme="p")).rules
    assert op.call(stub(op), "Earn", event("op-1", member="m3")).points == 50
    for c, method, req in [(up, "DefineRule", R.DefineRuleRequest(request_id="x", rule=body(spend))),
                           (aud, "Earn", event("aud-1")), (op, "Earn", event("op-2", member="m1")),
                           (op, "DefineCampaign", R.DefineCampaignRequest(request_id="c", programme="p", campaign_id="c"))]:
        expect_error(c.call, stub(c), method, req, code=S.PERMISSION_DENIED, reason="PERMISSION_DENIED")
    assert server.app.ledger.balance("m1", "general").total == 50
