//! Placement throughput: 10,000 instances on 1,000 hosts through `place` and `apply`, the
//! way the leader commits them one by one. Prints the rate; asserts only the outcome.

use std::time::Instant;

use super::testkit::{member, Cluster, GIB};
use super::LoadIndex;

#[test]
fn places_ten_thousand_instances_on_a_thousand_hosts() {
    let hosts: Vec<_> = (0..1000)
        .map(|i| member(&format!("h{i:04}"), &format!("rack{}", i % 20), 8, 16 * GIB))
        .collect();
    let mut c = Cluster::new(hosts);
    let sizes = [
        vec![],
        vec![("limits.cpu", "0.5"), ("limits.memory", "256MiB")],
        vec![("limits.cpu", "1"), ("limits.memory", "1GiB")],
    ];
    let start = Instant::now();
    for i in 0..10_000 {
        let cfg = &sizes[i % sizes.len()];
        c.launch(&format!("c{i}"), cfg, "").unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "placed 10000 instances on 1000 hosts in {secs:.2}s: {:.0} placements/s (place + apply{})",
        10_000.0 / secs,
        if cfg!(debug_assertions) {
            ", debug build"
        } else {
            ""
        }
    );
    let index = c.state.load_index();
    let per_host: Vec<u32> = c
        .state
        .members
        .keys()
        .map(|h| index.host(h).instances)
        .collect();
    assert_eq!(per_host.iter().sum::<u32>(), 10_000);
    let cpu: Vec<u64> = c
        .state
        .members
        .keys()
        .map(|h| index.host(h).reserved.cpu_millicores)
        .collect();
    let (min, max) = (cpu.iter().min().unwrap(), cpu.iter().max().unwrap());
    println!(
        "instances per host: {}..{}, reserved CPU per host: {min}..{max} thousandths",
        per_host.iter().min().unwrap(),
        per_host.iter().max().unwrap()
    );
    assert!(max - min <= 1000, "spread evenly: {min}..{max}");
    assert_eq!(*index, LoadIndex::build(&c.state));
}
