//! A linearizability checker for histories of register operations, in the manner of
//! Porcupine (Wing & Gong's search with memoization): every key is an independent register;
//! a history is linearizable if each key's operations can be put in one order that respects
//! real time (an operation that returned before another was called comes first) and in
//! which every read returns the latest write. A call that timed out may or may not have
//! taken effect: it may be placed anywhere after its call, or left out.
//!
//! Used by the fault suite (issue 5): clients record every call with its start, end and
//! outcome while faults happen; afterwards `check` says whether the cluster kept its
//! promise, and if not, which key broke it.

mod register;

pub use register::{check, check_key, Call, Op, Outcome, Verdict};
