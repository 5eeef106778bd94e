//! The per-key register model and the search.

use std::collections::{BTreeMap, HashSet};

/// What a call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set the key to a value.
    Write(String),
    /// Read the key; `None` means it was absent.
    Read(Option<String>),
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged (a write took effect; a read returned its value).
    Ok,
    /// Refused: it certainly did not take effect (left out of the search).
    Failed,
    /// Timed out or lost: it may have taken effect, at any time after its call.
    Unknown,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub key: String,
    pub op: Op,
    /// When it was sent and when its answer arrived (any monotonic unit).
    pub start: u64,
    pub end: u64,
    pub outcome: Outcome,
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// A key whose calls admit no legal order.
    Violation {
        key: String,
    },
    /// The search was too large to finish (a key with more than 128 relevant calls).
    TooLarge {
        key: String,
        calls: usize,
    },
}

/// Checks a whole history, key by key.
pub fn check(history: &[Call]) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for c in history {
        by_key.entry(c.key.as_str()).or_default().push(c);
    }
    for calls in by_key.into_values() {
        let owned: Vec<Call> = calls.into_iter().cloned().collect();
        match check_key(&owned) {
            Verdict::Linearizable => {}
            other => return other,
        }
    }
    Verdict::Linearizable
}

/// Checks the calls of one key (all must have the same key).
pub fn check_key(calls: &[Call]) -> Verdict {
    let key = calls.first().map(|c| c.key.clone()).unwrap_or_default();
    // Refused calls did nothing; unknown reads tell nothing.
    let ops: Vec<&Call> = calls
        .iter()
        .filter(|c| {
            !matches!(
                (c.outcome, &c.op),
                (Outcome::Failed, _) | (Outcome::Unknown, Op::Read(_))
            )
        })
        .collect();
    if ops.len() > 128 {
        return Verdict::TooLarge {
            key,
            calls: ops.len(),
        };
    }
    let must: u128 = ops
        .iter()
        .enumerate()
        .filter(|(_, c)| c.outcome == Outcome::Ok)
        .fold(0, |m, (i, _)| m | (1u128 << i));
    let end = |c: &Call| {
        if c.outcome == Outcome::Unknown {
            u64::MAX
        } else {
            c.end
        }
    };
    let mut seen: HashSet<(u128, Option<String>)> = HashSet::new();
    // Depth-first search over (linearized set, register value).
    let mut stack: Vec<(u128, Option<String>)> = vec![(0, None)];
    while let Some((done, value)) = stack.pop() {
        if done & must == must {
            return Verdict::Linearizable;
        }
        if !seen.insert((done, value.clone())) {
            continue;
        }
        // The earliest return among the calls not yet placed bounds which can go next.
        let horizon = ops
            .iter()
            .enumerate()
            .filter(|(i, _)| done & (1 << i) == 0)
            .map(|(_, c)| end(c))
            .min()
            .unwrap_or(u64::MAX);
        for (i, c) in ops.iter().enumerate() {
            if done & (1 << i) != 0 || c.start > horizon {
                continue;
            }
            let next = done | (1 << i);
            match &c.op {
                Op::Write(v) => stack.push((next, Some(v.clone()))),
                Op::Read(r) if *r == value => stack.push((next, value.clone())),
                Op::Read(_) => {}
            }
        }
    }
    Verdict::Violation { key }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(key: &str, v: &str, start: u64, end: u64, outcome: Outcome) -> Call {
        Call {
            key: key.into(),
            op: Op::Write(v.into()),
            start,
            end,
            outcome,
        }
    }

    fn r(key: &str, v: Option<&str>, start: u64, end: u64) -> Call {
        Call {
            key: key.into(),
            op: Op::Read(v.map(str::to_string)),
            start,
            end,
            outcome: Outcome::Ok,
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            r("k", None, 0, 1),
            w("k", "1", 2, 3, Outcome::Ok),
            r("k", Some("1"), 4, 5),
            w("k", "2", 6, 7, Outcome::Ok),
            r("k", Some("2"), 8, 9),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_a_violation() {
        let h = vec![
            w("k", "1", 0, 1, Outcome::Ok),
            w("k", "2", 2, 3, Outcome::Ok),
            r("k", Some("1"), 4, 5),
        ];
        assert_eq!(check(&h), Verdict::Violation { key: "k".into() });
    }

    #[test]
    fn overlapping_calls_may_take_either_order() {
        // Both writes overlap the read: it may see either value, or none.
        for seen in [None, Some("1"), Some("2")] {
            let h = vec![
                w("k", "1", 0, 10, Outcome::Ok),
                w("k", "2", 1, 9, Outcome::Ok),
                r("k", seen, 2, 8),
            ];
            assert_eq!(check(&h), Verdict::Linearizable, "{seen:?}");
        }
        // But two later reads cannot disagree about which write came last.
        let h = vec![
            w("k", "1", 0, 10, Outcome::Ok),
            w("k", "2", 1, 9, Outcome::Ok),
            r("k", Some("1"), 11, 12),
            r("k", Some("2"), 13, 14),
        ];
        assert_eq!(check(&h), Verdict::Violation { key: "k".into() });
    }

    #[test]
    fn a_timed_out_write_may_or_may_not_have_happened() {
        let maybe = w("k", "x", 0, 1, Outcome::Unknown);
        let seen = vec![maybe.clone(), r("k", Some("x"), 50, 51)];
        assert_eq!(check(&seen), Verdict::Linearizable);
        let not_seen = vec![maybe.clone(), r("k", None, 50, 51)];
        assert_eq!(check(&not_seen), Verdict::Linearizable);
        // A refused write must never be seen.
        let refused = vec![w("k", "y", 0, 1, Outcome::Failed), r("k", Some("y"), 5, 6)];
        assert_eq!(check(&refused), Verdict::Violation { key: "k".into() });
    }

    #[test]
    fn a_lost_acknowledged_write_is_a_violation() {
        let h = vec![w("k", "1", 0, 1, Outcome::Ok), r("k", None, 5, 6)];
        assert_eq!(check(&h), Verdict::Violation { key: "k".into() });
    }

    #[test]
    fn keys_are_independent_and_large_histories_finish() {
        let mut h = Vec::new();
        let mut t = 0;
        for i in 0..100u64 {
            let key = format!("k{}", i % 5);
            h.push(w(&key, &i.to_string(), t, t + 3, Outcome::Ok));
            h.push(r(&key, Some(&i.to_string()), t + 4, t + 5));
            t += 6;
        }
        assert_eq!(check(&h), Verdict::Linearizable);
        h.push(r("k0", Some("1"), t + 10, t + 11));
        assert_eq!(check(&h), Verdict::Violation { key: "k0".into() });
    }
}
