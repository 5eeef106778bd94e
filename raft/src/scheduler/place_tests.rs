//! Tests of `place`: filter reasons, strategies, targets and placement groups.

use super::testkit::{member, Cluster, GIB, MIB};
use super::{place_with, InFlight, NoFit, Refusal};
use crate::model::{Command, GroupPolicy, PlacementGroup, SchedulerConfig, Strategy};

fn four() -> Cluster {
    Cluster::new(vec![
        member("a", "r1", 4, 4 * GIB),
        member("b", "r1", 4, 4 * GIB),
        member("c", "r2", 4, 4 * GIB),
        member("d", "r2", 4, 4 * GIB),
    ])
}

fn group(c: &mut Cluster, name: &str, policy: GroupPolicy, strict: bool) {
    c.apply(Command::CreatePlacementGroup {
        group: PlacementGroup {
            name: name.into(),
            policy,
            strict,
        },
    })
    .unwrap();
}

fn strategy(c: &mut Cluster, strategy: Strategy) {
    c.apply(Command::SetSchedulerConfig {
        config: SchedulerConfig {
            strategy,
            ..Default::default()
        },
    })
    .unwrap();
}

#[test]
fn every_host_says_why_it_refused() {
    let mut c = Cluster::new(vec![
        member("a", "r1", 4, 4 * GIB),
        member("b", "r1", 4, 4 * GIB),
        member("c", "r1", 4, GIB),
        member("d", "r1", 4, 4 * GIB),
        member("e", "r1", 4, 4 * GIB),
        member("f", "r1", 4, 4 * GIB),
    ]);
    c.apply(Cluster::create("big", &[("limits.memory", "896MiB")], "c"))
        .unwrap();
    for h in ["c", "d", "f"] {
        c.member_mut(h).labels.insert("zone".into(), "eu".into());
    }
    c.member_mut("a").evacuated = true;
    c.offline.insert("b".into());
    c.member_mut("d").architecture = "aarch64".into();
    c.member_mut("f").capacity.cpu_millicores = 200;
    c.member_mut("e").labels.insert("zone".into(), "us".into());
    let req = Cluster::request(
        "c1",
        &[
            ("limits.memory", "512MiB"),
            ("limits.cpu", "0.5"),
            ("placement.labels", "zone=eu"),
        ],
        "",
    );
    let e = c.place(&req).unwrap_err();
    let NoFit::NoHostFits { hosts, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(hosts.len(), 6);
    assert_eq!(
        e.to_string(),
        "no host can take instance 'c1' (0.5 CPU, 512MiB memory, 100 process slots):\n  \
         a: evacuated\n  \
         b: offline\n  \
         c: needs 512MiB memory, 128MiB free\n  \
         d: architecture aarch64, the image needs x86_64\n  \
         e: label zone=us (wanted zone=eu)\n  \
         f: needs 0.5 CPU, 0.2 free"
    );
    c.member_mut("e").labels.insert("zone".into(), "eu".into());
    assert_eq!(c.place(&req).unwrap().host, "e");
}

#[test]
fn distinct_errors_for_empty_cluster_unknown_host_and_empty_group() {
    let empty = Cluster::new(vec![]);
    let e = empty.place(&Cluster::request("c1", &[], "")).unwrap_err();
    assert!(matches!(e, NoFit::NoMembers { .. }), "{e}");
    let mut c = four();
    c.member_mut("c").groups.insert("gpu".into());
    let e = c.place(&Cluster::request("c1", &[], "z")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown target host 'z' (members: a, b, c, d)"
    );
    let e = c.place(&Cluster::request("c1", &[], "@arm")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cluster group @arm has no members (groups: gpu)"
    );
    let e = c
        .place(&Cluster::request("c1", &[("placement.group", "web")], ""))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown placement group 'web' (placement groups: none)"
    );
    let e = c
        .place(&Cluster::request("c1", &[("limits.cpu", "lots")], ""))
        .unwrap_err();
    assert!(matches!(e, NoFit::Config(_)), "{e}");
}

#[test]
fn targets_a_host_or_a_group() {
    let mut c = four();
    c.member_mut("b").groups.insert("gpu".into());
    c.member_mut("d").groups.insert("gpu".into());
    for i in 0..3 {
        assert_eq!(c.launch(&format!("t{i}"), &[], "c").unwrap(), "c");
    }
    let hosts: Vec<String> = (0..4)
        .map(|i| c.launch(&format!("g{i}"), &[], "@gpu").unwrap())
        .collect();
    assert_eq!(hosts, ["b", "d", "b", "d"]);
    c.member_mut("b").evacuated = true;
    c.offline.insert("d".into());
    let e = c.place(&Cluster::request("x", &[], "@gpu")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no host can take instance 'x' (0.1 CPU, 64MiB memory, 100 process slots):\n  \
         a: not in group @gpu\n  b: evacuated\n  c: not in group @gpu\n  d: offline"
    );
    let e = c.place(&Cluster::request("x", &[], "d")).unwrap_err();
    assert!(e.to_string().ends_with(":\n  d: offline"), "{e}");
}

#[test]
fn spread_takes_the_least_loaded_host() {
    let mut c = four();
    let hosts: Vec<String> = (0..8)
        .map(|i| c.launch(&format!("c{i}"), &[], "").unwrap())
        .collect();
    assert_eq!(hosts, ["a", "b", "c", "d", "a", "b", "c", "d"]);
    // One big instance outweighs two small ones.
    let mut c = four();
    c.apply(Cluster::create("big", &[("limits.cpu", "2")], "a"))
        .unwrap();
    for (i, h) in ["b", "b", "c", "c", "d", "d"].iter().enumerate() {
        c.apply(Cluster::create(&format!("s{i}"), &[], h)).unwrap();
    }
    assert_ne!(c.launch("n", &[], "").unwrap(), "a");
}

#[test]
fn spread_balances_cpu_and_memory() {
    let mut c = Cluster::new(vec![
        member("a", "r1", 4, 4 * GIB),
        member("b", "r1", 4, 4 * GIB),
    ]);
    // a: CPU 75% full, memory nearly empty; b: both at 50%.
    c.apply(Cluster::create(
        "x",
        &[("limits.cpu", "3"), ("limits.memory", "64MiB")],
        "a",
    ))
    .unwrap();
    c.apply(Cluster::create(
        "y",
        &[("limits.cpu", "2"), ("limits.memory", "2GiB")],
        "b",
    ))
    .unwrap();
    assert_eq!(
        c.launch("n", &[("limits.memory", "64MiB")], "").unwrap(),
        "b"
    );
}

#[test]
fn binpack_fills_one_host_before_the_next() {
    let mut c = four();
    strategy(&mut c, Strategy::BinPack);
    let cfg = [("limits.cpu", "1"), ("limits.memory", "1GiB")];
    let hosts: Vec<String> = (0..6)
        .map(|i| c.launch(&format!("c{i}"), &cfg, "").unwrap())
        .collect();
    assert_eq!(hosts, ["a", "a", "a", "a", "b", "b"]);
    // The most loaded host that still fits: a is full, so b.
    assert_eq!(
        c.place(&Cluster::request("m", &[("limits.memory", "512MiB")], ""))
            .unwrap()
            .host,
        "b"
    );
}

#[test]
fn strict_spread_group_uses_distinct_hosts_and_domains() {
    let mut c = four();
    group(&mut c, "web", GroupPolicy::Spread, true);
    let cfg = [("placement.group", "web")];
    let first = c.launch("w0", &cfg, "").unwrap();
    let second = c.launch("w1", &cfg, "").unwrap();
    assert_eq!(first, "a");
    assert_eq!(second, "c", "another failure domain is preferred");
    let mut hosts = vec![first, second, c.launch("w2", &cfg, "").unwrap()];
    hosts.push(c.launch("w3", &cfg, "").unwrap());
    hosts.sort();
    assert_eq!(hosts, ["a", "b", "c", "d"]);
    let e = c.place(&Cluster::request("w4", &cfg, "")).unwrap_err();
    let NoFit::NoHostFits { hosts, .. } = &e else {
        panic!("{e}")
    };
    assert!(hosts
        .iter()
        .all(|(_, r)| matches!(r, Refusal::SpreadConflict { instances: 1, .. })));
    assert!(e
        .to_string()
        .contains("a: already runs 1 instance of placement group 'web' (strict spread)"));
}

#[test]
fn permissive_spread_group_doubles_up_when_it_must() {
    let mut c = Cluster::new(vec![
        member("a", "r1", 4, 4 * GIB),
        member("b", "r2", 4, 4 * GIB),
    ]);
    group(&mut c, "web", GroupPolicy::Spread, false);
    // Load b so that plain spread would pick a twice.
    c.apply(Cluster::create("load", &[("limits.cpu", "3")], "b"))
        .unwrap();
    let cfg = [("placement.group", "web")];
    assert_eq!(c.launch("w0", &cfg, "").unwrap(), "a");
    assert_eq!(c.launch("w1", &cfg, "").unwrap(), "b");
    assert_eq!(c.launch("w2", &cfg, "").unwrap(), "a");
}

#[test]
fn compact_group_stays_together() {
    let mut c = four();
    group(&mut c, "db", GroupPolicy::Compact, true);
    group(&mut c, "cache", GroupPolicy::Compact, false);
    let cfg = [("placement.group", "db"), ("limits.cpu", "1")];
    let hosts: Vec<String> = (0..4)
        .map(|i| c.launch(&format!("d{i}"), &cfg, "").unwrap())
        .collect();
    assert_eq!(hosts, ["a", "a", "a", "a"]);
    let e = c.place(&Cluster::request("d4", &cfg, "")).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("a: needs 1 CPU, 0 free"), "{text}");
    assert!(
        text.contains("b: placement group 'db' (strict compact) runs on other hosts"),
        "{text}"
    );
    // Permissive: together while it fits, then elsewhere.
    let cfg = [("placement.group", "cache"), ("limits.cpu", "2")];
    let hosts: Vec<String> = (0..3)
        .map(|i| c.launch(&format!("k{i}"), &cfg, "").unwrap())
        .collect();
    assert_eq!(hosts, ["b", "b", "c"]);
}

#[test]
fn unlimited_instances_count_the_defaults_and_deletion_frees_room() {
    let mut c = Cluster::new(vec![member("a", "r1", 1, 4 * GIB)]);
    for i in 0..10 {
        c.launch(&format!("c{i}"), &[], "").unwrap();
    }
    let e = c.place(&Cluster::request("c10", &[], "")).unwrap_err();
    assert!(e.to_string().contains("a: needs 0.1 CPU, 0 free"), "{e}");
    c.apply(Command::SetDesired {
        name: "c3".into(),
        desired: crate::model::DesiredState::Deleted,
        force: true,
        timeout_s: 0,
        restart: false,
        expected_version: None,
    })
    .unwrap();
    assert_eq!(c.launch("c10", &[], "").unwrap(), "a");
    // Smaller defaults make room for more.
    c.apply(Command::SetSchedulerConfig {
        config: SchedulerConfig {
            default_cpu_millicores: 50,
            ..Default::default()
        },
    })
    .unwrap();
    assert_eq!(c.launch("c11", &[], "").unwrap(), "a");
    assert_eq!(c.state.load_index().host("a").instances, 11);
    assert_eq!(
        c.state.load_index().host("a").reserved.memory_bytes,
        11 * 64 * MIB
    );
}

#[test]
fn unknown_capacity_is_not_checked() {
    let mut m = member("a", "r1", 0, 0);
    m.capacity.processes = 0;
    let mut c = Cluster::new(vec![m]);
    for i in 0..50 {
        assert_eq!(
            c.launch(&format!("c{i}"), &[("limits.memory", "1GiB")], "")
                .unwrap(),
            "a"
        );
    }
}

#[test]
fn plans_in_flight_see_each_other() {
    let mut c = four();
    group(&mut c, "web", GroupPolicy::Spread, true);
    let mut in_flight = InFlight::new();
    let online = |_: &str| true;
    let mut plans = Vec::new();
    for i in 0..4 {
        let req = Cluster::request(&format!("w{i}"), &[("placement.group", "web")], "");
        let p = place_with(&c.state, &online, &req, &in_flight).unwrap();
        in_flight.reserve(&req.instance, &p);
        plans.push(p.host);
    }
    assert_eq!(plans, ["a", "c", "b", "d"]);
    let req = Cluster::request("w4", &[("placement.group", "web")], "");
    assert!(place_with(&c.state, &online, &req, &in_flight).is_err());
    // Commit them; once released, the applied state alone says the same.
    for (i, host) in plans.iter().enumerate() {
        let name = format!("w{i}");
        c.apply(Cluster::create(&name, &[("placement.group", "web")], host))
            .unwrap();
        in_flight.release(&name);
    }
    assert!(in_flight.is_empty());
    assert!(place_with(&c.state, &online, &req, &in_flight).is_err());
}

#[test]
fn large_clusters_score_a_sample_but_refusals_name_every_host() {
    use super::place::SAMPLE;
    let n = SAMPLE + 44;
    let mut c = Cluster::new(
        (0..n)
            .map(|i| member(&format!("h{i:04}"), "r1", 4, 8 * GIB))
            .collect(),
    );
    // Spread, no group, no target: the first SAMPLE fitting hosts are scored.
    let p = c.place(&Cluster::request("x", &[], "")).unwrap();
    assert_eq!(p.candidates, SAMPLE);
    // Different instances start at different hosts.
    let starts: std::collections::BTreeSet<String> = (0..20)
        .map(|i| {
            c.place(&Cluster::request(&format!("y{i}"), &[], ""))
                .unwrap()
                .host
        })
        .collect();
    assert!(starts.len() > 1, "{starts:?}");
    // Bin-packing examines every host.
    strategy(&mut c, Strategy::BinPack);
    assert_eq!(
        c.place(&Cluster::request("x", &[], "")).unwrap().candidates,
        n
    );
    strategy(&mut c, Strategy::Spread);
    // Nothing fits: every host is examined and named.
    match c.place(&Cluster::request("big", &[("limits.cpu", "64")], "")) {
        Err(NoFit::NoHostFits { hosts, .. }) => assert_eq!(hosts.len(), n),
        other => panic!("{other:?}"),
    }
    // Only one host fits: it is found wherever the scan starts.
    c.member_mut("h0007").capacity.cpu_millicores = 128_000;
    for i in 0..10 {
        let p = c
            .place(&Cluster::request(
                &format!("z{i}"),
                &[("limits.cpu", "64")],
                "",
            ))
            .unwrap();
        assert_eq!(p.host, "h0007");
    }
}
