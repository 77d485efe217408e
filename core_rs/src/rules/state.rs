//! Per-member rule state (cap counters, check-in streak, referral, tier qualification, groups):
//! one record per member in the `rule_state` database, cached by the writer and written back
//! once per group commit.
use serde::{Deserialize, Serialize};

use super::model::{TierBasis, Window};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// scope: a rule id, or "*" for the programme's caps
    pub s: String,
    pub w: Window,
    /// window index (local day, month index, year; 0 for lifetime)
    pub i: i64,
    pub n: i64,
}

/// Fields at their defaults are left out of the stored map (most members have no counters,
/// streak or referral): a smaller record to encode, log and merge on every change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    #[serde(default)]
    pub v: u8,
    /// cap counters of the current windows
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub c: Vec<Counter>,
    /// 1 once the member has made a purchase (records written before this counted on; only
    /// zero versus not zero is read)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub purchases: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub referral_paid: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub streak: u32,
    /// local day index of the last check-in
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkin: Option<i64>,
    /// tier qualification per month: (month index, points earned, spend)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub q: Vec<(i64, i64, i64)>,
    /// the tier was set by an operator: automatic evaluation leaves it alone (TL-4)
    #[serde(default, skip_serializing_if = "is_false")]
    pub tier_override: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl MemberState {
    pub fn used(&self, scope: &str, w: Window, idx: i64) -> i64 {
        self.c.iter().find(|c| c.w == w && c.s == scope && c.i == idx).map_or(0, |c| c.n)
    }

    pub fn add(&mut self, scope: &str, w: Window, idx: i64, n: i64) {
        match self.c.iter_mut().find(|c| c.w == w && c.s == scope) {
            Some(c) if c.i == idx => c.n += n,
            Some(c) => {
                c.i = idx;
                c.n = n;
            }
            None => self.c.push(Counter { s: scope.to_string(), w, i: idx, n }),
        }
    }

    pub fn qualify(&mut self, month: i64, points: i64, spend: i64, window: u32) {
        self.q.retain(|(m, _, _)| *m > month - window as i64);
        if points == 0 && spend == 0 {
            return;
        }
        match self.q.iter_mut().find(|(m, _, _)| *m == month) {
            Some(b) => {
                b.1 += points;
                b.2 += spend;
            }
            None => self.q.push((month, points, spend)),
        }
    }

    pub fn qualifying(&self, basis: TierBasis, month: i64, window: u32) -> i64 {
        self.q
            .iter()
            .filter(|(m, _, _)| *m > month - window as i64 && *m <= month)
            .map(|(_, p, s)| if basis == TierBasis::Points { *p } else { *s })
            .sum()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{decode, encode};

    #[test]
    fn default_fields_are_left_out_and_read_back_as_defaults() {
        let st = MemberState { purchases: 1, ..Default::default() };
        let bytes = encode(&st);
        // {"v": 0, "purchases": 1}: a 2-entry map, not all 10 fields
        assert_eq!(bytes[0], 0x82, "{bytes:?}");
        assert_eq!(decode::<MemberState>(&bytes).unwrap(), st);
        let full = MemberState {
            v: 1,
            c: vec![Counter { s: "r1".into(), w: Window::Day, i: 3, n: 5 }],
            purchases: 1,
            referrer: Some("m2".into()),
            referral_paid: true,
            streak: 4,
            last_checkin: Some(9),
            q: vec![(1, 2, 3)],
            tier_override: true,
            groups: vec!["vip".into()],
        };
        assert_eq!(decode::<MemberState>(&encode(&full)).unwrap(), full);
    }
}
