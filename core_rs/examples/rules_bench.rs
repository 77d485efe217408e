//! Rule evaluation throughput on one core (issue #3): events evaluated per second against 10,
//! 100 and 1,000 active rules, pure evaluation (compiled rule set, no LMDB).
//!
//!     cargo run --release --example rules_bench -- [events per run, default 200000]
//!     RULES_BENCH_SIZES=100 cargo run --release --example rules_bench   # one size only
//!
//! Two rule sets per size: "same kind" — every rule applies to the event's kind, so each event
//! is checked against all N rules (the worst case); "mixed" — rules spread over 10 event kinds,
//! the kind index narrows it to ~N/10. Conditions are a realistic mix (channel, merchant
//! category, amount range, weekdays, time of day, tier, org subtree); ~1 in 10 rules fires.
use std::time::Instant;

use pypoints_core::model::*;
use pypoints_core::rules::*;

const KINDS: [&str; 10] = ["purchase", "card_spend", "deposit", "insurance", "review", "checkin", "quiz", "signup", "birthday", "custom"];

fn rules(n: usize, mixed: bool) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let s = |x: &str| vec![x.to_string()];
            let when = match i % 10 {
                0 => Cond::All(vec![Cond::Channel(s("app")), Cond::Amount { min: Some(1_000), max: None }]),
                1 => Cond::Merchant(vec![format!("m{}", i % 50)]),
                2 => Cond::Category(vec![format!("{}", 5000 + i % 30)]),
                3 => Cond::All(vec![Cond::Weekdays(vec![6, 7]), Cond::Tier(s("gold"))]),
                4 => Cond::TimeOfDay { from: 22 * 60, to: 23 * 60 },
                5 => Cond::Org(vec!["Jiangsu".into()]),
                6 => Cond::Any(vec![Cond::Channel(s("web")), Cond::Attr { key: "card".into(), values: s("platinum") }]),
                7 => Cond::Not(Box::new(Cond::Amount { min: None, max: Some(1_000_000) })),
                8 => Cond::Between { from: 0, to: 1_000 },
                _ => Cond::All(vec![Cond::Channel(s("pos")), Cond::Amount { min: Some(100), max: Some(1_000_000) }]),
            };
            let kind = if mixed { KINDS[i % KINDS.len()] } else { "purchase" };
            Rule {
                programme: "p".into(),
                id: format!("r{i:04}"),
                version: 1,
                name: String::new(),
                enabled: true,
                kinds: vec![kind.into()],
                priority: (i % 7) as i32,
                stacking: Stacking::Stackable,
                when: Some(when),
                action: Action::Rate { points: 1, per_minor: 100 },
                point_type: "pts".into(),
                validity: None,
                pending: false,
                caps: if i % 3 == 0 { vec![Cap { window: Window::Day, max: 10_000 }] } else { vec![] },
                max_award: None,
                campaign: None,
            }
        })
        .collect()
}

fn main() {
    let events: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let p = Programme {
        v: 1,
        id: "p".into(),
        name: String::new(),
        types: vec![PointType { id: "pts".into(), priority: 0, validity: Validity::None, transferable: true, cash: CashRate { points: 1, minor: 100, min_points: 1, step_points: 1, max_points: None }, convert_to: vec![] }],
    };
    let m = Member { v: 1, id: "m1".into(), programme: "p".into(), phone: String::new(), id_hash: None, org: vec!["Shandong".into(), "Qingdao".into()], tier: "silver".into(), kind: "individual".into(), status: MemberStatus::Active, created_at: 0, cards: vec![] };
    let st = MemberState::default();
    let evs: Vec<Event> = (0..1_000)
        .map(|i| Event {
            kind: "purchase".into(),
            member: "m1".into(),
            amount: 100 + (i * 7919) % 50_000,
            term_days: 0,
            channel: ["pos", "app", "web"][i as usize % 3].into(),
            merchant: format!("m{}", i % 80),
            category: format!("{}", 5000 + i % 40),
            org: vec![],
            attrs: vec![],
        })
        .collect();
    let t0 = 1_715_300_000_000i64;
    println!("{:>6} {:>10} {:>14} {:>18} {:>12}", "rules", "set", "events/s", "rule checks/s", "fired/event");
    // RULES_BENCH_SIZES=100 (comma-separated) limits the run, e.g. for a profile of one size
    let sizes: Vec<usize> = std::env::var("RULES_BENCH_SIZES").map_or(vec![10, 100, 1_000], |v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect());
    for n in sizes {
        for mixed in [false, true] {
            let c = Compiled::build("p", None, None, vec![], rules(n, mixed));
            let budgets = |_: &str, _: &str, _: &str| 0i64;
            // warm up
            for e in evs.iter().take(1_000) {
                std::hint::black_box(evaluate(&c, &p, t0, e, &m, &st, None, budgets, false));
            }
            let start = Instant::now();
            let mut fired = 0usize;
            for k in 0..events {
                let e = &evs[k % evs.len()];
                let r = evaluate(&c, &p, t0 + (k as i64 % 86_400) * 1_000, e, &m, &st, None, budgets, false);
                fired += r.awards.len();
            }
            let s = start.elapsed().as_secs_f64();
            let per_event_rules = if mixed { n.div_ceil(KINDS.len()) } else { n };
            println!(
                "{:>6} {:>10} {:>14.0} {:>18.0} {:>12.2}",
                n,
                if mixed { "mixed" } else { "same kind" },
                events as f64 / s,
                (events * per_event_rules) as f64 / s,
                fired as f64 / events as f64
            );
        }
    }
}
