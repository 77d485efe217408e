"""RuleService: earning rules (versions), campaigns, tiers, earn and dry-run over
`pypoints.rules` (issue #3). Rule and tier bodies are the rules module's msgpack wire form."""

from __future__ import annotations

import re
from typing import Any

import grpc
import msgpack

from pypoints import rules as r
from pypoints.errors import InvalidRule
from pypoints.server.base import Servicer, opt, page_size, require, rpc
from pypoints.server.errors import ApiError, invalid
from pypoints.server import limits
from pypoints.v1 import rules_pb2 as pb
from pypoints.v1 import rules_pb2_grpc

_PATH = re.compile(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*):")


def _rule_error(e: InvalidRule) -> ApiError:
    """INVALID_RULE naming the rule path the rules module reported ("rule.caps[0].max: …")."""
    m = _PATH.match(e.message)
    return invalid(m.group(1) if m else "rule.body", e.message, "INVALID_RULE")


def _rule_of(body: pb.RuleBody) -> r.Rule:
    try:
        w = msgpack.unpackb(body.body, raw=False)
        if not isinstance(w, dict):
            raise ValueError("not a map")
        return r.Rule.from_wire(w)
    except InvalidRule as e:
        raise _rule_error(e) from None
    except Exception as e:  # noqa: BLE001
        raise invalid("rule.body", f"rule.body is not a packed pypoints.rules.Rule ({type(e).__name__}: {e})", "INVALID_RULE") from None


def _rule_pb(rule: r.Rule) -> pb.RuleBody:
    w = rule.wire()
    w["version"] = rule.version
    return pb.RuleBody(programme=rule.programme, rule_id=rule.id, version=rule.version, body=msgpack.packb(w))


def _page(items: list[Any], size: int, token: str) -> tuple[list[Any], str]:
    """Offset pages over a list read in one snapshot (rule lists are small)."""
    size = page_size(size) or limits.PAGE_SIZE_DEFAULT
    if token and not token.isdigit():
        raise invalid("page_token", "bad page token")
    start = int(token or 0)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


def _event(e: pb.EarnEvent) -> r.Event:
    return r.Event(require(e.request_id, "event.request_id"), require(e.kind, "event.kind"),
                   require(e.member_id, "event.member_id"), e.amount, e.term_days, e.channel, e.merchant,
                   e.category, tuple(e.org), tuple(sorted(e.attrs.items())))


class RuleServicer(Servicer, rules_pb2_grpc.RuleServiceServicer):
    def _define(self, req: pb.DefineRuleRequest, update: bool) -> pb.RuleVersionResponse:
        require(req.request_id, "request_id")
        rule = _rule_of(req.rule)
        try:
            v = (self.app.ledger.update_rule(rule, id=req.request_id) if update
                 else self.app.ledger.define_rule(rule, id=req.request_id))
        except InvalidRule as e:
            raise _rule_error(e) from None
        return pb.RuleVersionResponse(version=v)

    @rpc("rules.define", default_field="rule")
    def DefineRule(self, req: pb.DefineRuleRequest, context: grpc.ServicerContext, who: Any) -> pb.RuleVersionResponse:
        return self._define(req, False)

    @rpc("rules.define", default_field="rule")
    def UpdateRule(self, req: pb.DefineRuleRequest, context: grpc.ServicerContext, who: Any) -> pb.RuleVersionResponse:
        return self._define(req, True)

    @rpc("rules.define", default_field="rule_id")
    def DisableRule(self, req: pb.DisableRuleRequest, context: grpc.ServicerContext, who: Any) -> pb.RuleVersionResponse:
        v = self.app.ledger.disable_rule(require(req.programme, "programme"), require(req.rule_id, "rule_id"),
                                         id=require(req.request_id, "request_id"))
        return pb.RuleVersionResponse(version=v)

    @rpc("rules.list", default_field="programme")
    def ListRules(self, req: pb.ListRulesRequest, context: grpc.ServicerContext, who: Any) -> pb.ListRulesResponse:
        items, token = _page(self.app.ledger.rules(require(req.programme, "programme")), req.page_size, req.page_token)
        return pb.ListRulesResponse(rules=[_rule_pb(x) for x in items], next_page_token=token)

    @rpc("rules.list", default_field="rule_id")
    def ListRuleVersions(self, req: pb.ListRuleVersionsRequest, context: grpc.ServicerContext, who: Any) -> pb.ListRulesResponse:
        versions = self.app.ledger.rule_versions(require(req.programme, "programme"), require(req.rule_id, "rule_id"))
        items, token = _page(versions, req.page_size, req.page_token)
        return pb.ListRulesResponse(rules=[_rule_pb(x) for x in items], next_page_token=token)

    @rpc("rules.define", default_field="campaign_id")
    def DefineCampaign(self, req: pb.DefineCampaignRequest, context: grpc.ServicerContext, who: Any) -> pb.DefineCampaignResponse:
        c = r.Campaign(require(req.programme, "programme"), require(req.campaign_id, "campaign_id"), req.start, req.end,
                       opt(req, "budget"), req.budget_type, req.name)
        try:
            rc = self.app.ledger.define_campaign(c, id=require(req.request_id, "request_id"))
        except InvalidRule as e:
            raise _rule_error(e) from None
        return pb.DefineCampaignResponse(seq=rc.seq, replayed=rc.replayed)

    @rpc("rules.campaign_status", default_field="campaign_id")
    def GetCampaignStatus(self, req: pb.GetCampaignStatusRequest, context: grpc.ServicerContext, who: Any) -> pb.CampaignStatus:
        s = self.app.ledger.campaign_status(require(req.programme, "programme"), require(req.campaign_id, "campaign_id"))
        out = pb.CampaignStatus(programme=s.programme, campaign_id=s.id, start=s.start, end=s.end, granted=s.granted)
        if s.budget is not None:
            out.budget, out.left = s.budget, s.left
        return out

    @rpc("rules.define", default_field="body")
    def DefineTiers(self, req: pb.DefineTiersRequest, context: grpc.ServicerContext, who: Any) -> pb.RuleVersionResponse:
        require(req.request_id, "request_id")
        try:
            rc = self.app.ledger.execute(r.RecordCommand(req.request_id, "define_tiers", req.body))
        except InvalidRule as e:
            raise _rule_error(e) from None
        return pb.RuleVersionResponse(version=rc.amount)

    @rpc("rules.list", default_field="programme")
    def ListTiers(self, req: pb.ListTiersRequest, context: grpc.ServicerContext, who: Any) -> pb.ListTiersResponse:
        t = self.app.ledger.tiers(require(req.programme, "programme"))
        return pb.ListTiersResponse() if t is None else pb.ListTiersResponse(version=t.version, body=t.pack())

    @rpc("rules.earn", default_field="event.member_id")
    def Earn(self, req: pb.EarnRequest, context: grpc.ServicerContext, who: Any) -> pb.EarnResponse:
        res = self.app.ledger.earn(_event(req.event))
        out = pb.EarnResponse(
            request_id=res.id, seq=res.seq, points=res.points, replayed=res.replayed, zero=res.zero,
            lots=[pb.EarnedLot(rule_id=x.rule, rule_version=x.version, point_type=x.point_type, points=x.points)
                  for x in res.lots],
            cuts=[pb.Cut(rule_id=a, by=b, points=n) for a, b, n in res.cuts])
        if res.tier_change:
            out.tier_from, out.tier_to = res.tier_change
        return out

    @rpc("rules.dry_run", default_field="event.member_id")
    def DryRun(self, req: pb.EarnRequest, context: grpc.ServicerContext, who: Any) -> pb.EarnResponse:
        d = self.app.ledger.dry_run(_event(req.event))
        out = pb.EarnResponse(
            request_id=req.event.request_id, points=d.total,
            lots=[pb.EarnedLot(rule_id=a.rule, rule_version=a.version, point_type=a.point_type, points=a.points)
                  for a in d.awards],
            cuts=[pb.Cut(rule_id=a.rule, by=by, points=n) for a in d.awards for by, n in a.cuts],
            zero=[a.rule for a in d.awards if a.points == 0],
            notes=[pb.RuleNote(rule_id=n.rule, rule_version=n.version, fired=n.fired, points=n.points, reason=n.reason)
                   for n in d.notes])
        if d.tier_change:
            out.tier_from, out.tier_to = d.tier_change
        return out
