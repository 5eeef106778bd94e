//! The cluster state as sled records: one JSON record per member, image, alias, instance,
//! token and identity, plus the CA, the scheduler options and the placement groups (one
//! record each, in `cluster`), and the state machine's position in `sm_meta`.
//!
//! `load` and `all_records` destructure `ClusterState` field by field, so a new field in the
//! model fails to compile here until the store knows where to keep it.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

use super::error::StoreError;
use super::shared::Applied;
use super::trees::{
    encode, Batches, Table, Trees, CA, INSTALLING, LAST_APPLIED, LAST_MEMBERSHIP, REVISION,
};
use crate::model::{ClusterState, InstanceName, StateKey};

/// Key of the scheduler options in the `cluster` tree.
pub(crate) const SCHEDULER: &[u8] = b"scheduler";
/// Key of the placement groups (all of them, one record) in the `cluster` tree.
pub(crate) const PLACEMENT_GROUPS: &[u8] = b"placement_groups";

/// A record to write: its tree, key and JSON value.
type Record = (Table, Vec<u8>, Vec<u8>);

/// Where the record of `key` lives.
pub(crate) fn locate(key: &StateKey) -> (Table, &[u8]) {
    match key {
        StateKey::Member(n) => (Table::Members, n.as_bytes()),
        StateKey::Image(n) => (Table::Images, n.as_bytes()),
        StateKey::Alias(n) => (Table::Aliases, n.as_bytes()),
        StateKey::Instance(n) => (Table::Instances, n.as_bytes()),
        StateKey::Token(n) => (Table::Tokens, n.as_bytes()),
        StateKey::Identity(n) => (Table::Identities, n.as_bytes()),
        StateKey::Ca => (Table::Cluster, CA),
        StateKey::Scheduler => (Table::Cluster, SCHEDULER),
        StateKey::PlacementGroups => (Table::Cluster, PLACEMENT_GROUPS),
    }
}

fn enc<T: Serialize>(what: &'static str, v: Option<&T>) -> Result<Option<Vec<u8>>, StoreError> {
    v.map(|v| encode(what, v)).transpose()
}

/// The record of `key` in `state`, or `None` if there is none.
pub(crate) fn current(state: &ClusterState, key: &StateKey) -> Result<Option<Vec<u8>>, StoreError> {
    match key {
        StateKey::Member(n) => enc("a member", state.members.get(n)),
        StateKey::Image(n) => enc("an image", state.images.get(n)),
        StateKey::Alias(n) => enc("an alias", state.aliases.get(n)),
        StateKey::Instance(n) => enc(
            "an instance",
            InstanceName::new(n)
                .ok()
                .and_then(|k| state.instances.get(&k)),
        ),
        StateKey::Token(n) => enc("a token", state.tokens.get(n)),
        StateKey::Identity(n) => enc("an identity", state.identities.get(n)),
        StateKey::Ca => enc("the cluster ca", state.ca.as_ref()),
        StateKey::Scheduler => enc("the scheduler options", Some(&state.scheduler)),
        StateKey::PlacementGroups => enc("the placement groups", Some(&state.placement_groups)),
    }
}

/// Writes `applied`'s position (last applied, membership, revision) into `batches`.
pub(crate) fn put_position(batches: &mut Batches, applied: &Applied) -> Result<(), StoreError> {
    batches.put(
        Table::SmMeta,
        LAST_APPLIED,
        encode("the last applied log id", &applied.last_applied)?,
    );
    batches.put(
        Table::SmMeta,
        LAST_MEMBERSHIP,
        encode("the last membership", &applied.last_membership)?,
    );
    batches.put(
        Table::SmMeta,
        REVISION,
        encode("the revision", &applied.state.revision)?,
    );
    Ok(())
}

/// The batches that bring the records of `keys` and the position up to date with `applied`.
pub(crate) fn changes(applied: &Applied, keys: &BTreeSet<StateKey>) -> Result<Batches, StoreError> {
    let mut batches = Batches::new();
    for key in keys {
        let (table, k) = locate(key);
        match current(&applied.state, key)? {
            Some(v) => batches.put(table, k, v),
            None => batches.remove(table, k),
        }
    }
    put_position(&mut batches, applied)?;
    Ok(batches)
}

fn records_of<K, V: Serialize>(
    out: &mut Vec<Record>,
    table: Table,
    what: &'static str,
    map: &BTreeMap<K, V>,
    key: impl Fn(&K) -> &str,
) -> Result<(), StoreError> {
    for (k, v) in map {
        out.push((table, key(k).as_bytes().to_vec(), encode(what, v)?));
    }
    Ok(())
}

/// Every record of `state`.
fn all_records(state: &ClusterState) -> Result<Vec<Record>, StoreError> {
    let ClusterState {
        revision: _,
        members,
        images,
        aliases,
        instances,
        ca,
        tokens,
        identities,
        scheduler,
        placement_groups,
        load: _,
    } = state;
    let mut out = Vec::new();
    records_of(&mut out, Table::Members, "a member", members, |k| k)?;
    records_of(&mut out, Table::Images, "an image", images, |k| k)?;
    records_of(&mut out, Table::Aliases, "an alias", aliases, |k| k)?;
    records_of(&mut out, Table::Instances, "an instance", instances, |k| {
        k.as_str()
    })?;
    records_of(&mut out, Table::Tokens, "a token", tokens, |k| k)?;
    records_of(
        &mut out,
        Table::Identities,
        "an identity",
        identities,
        |k| k,
    )?;
    if let Some(ca) = ca {
        out.push((Table::Cluster, CA.to_vec(), encode("the cluster ca", ca)?));
    }
    out.push((
        Table::Cluster,
        SCHEDULER.to_vec(),
        encode("the scheduler options", scheduler)?,
    ));
    out.push((
        Table::Cluster,
        PLACEMENT_GROUPS.to_vec(),
        encode("the placement groups", placement_groups)?,
    ));
    Ok(out)
}

/// Replaces everything the state machine has on disk with `applied`, in one transaction,
/// and clears the "installing" marker.
pub(crate) fn rewrite(trees: &Trees, applied: &Applied) -> Result<(), StoreError> {
    let records = all_records(&applied.state)?;
    let mut batches = Batches::new();
    let mut keep: BTreeSet<(Table, &[u8])> = BTreeSet::new();
    for (table, k, v) in &records {
        keep.insert((*table, k));
        batches.put(*table, k, v.clone());
    }
    for table in Table::ALL {
        if table == Table::SmMeta {
            continue;
        }
        for k in trees.table(table).iter().keys() {
            let k = k.map_err(trees.read_err(table.name()))?;
            if !keep.contains(&(table, &k[..])) {
                batches.remove(table, &k);
            }
        }
    }
    put_position(&mut batches, applied)?;
    batches.remove(Table::SmMeta, INSTALLING);
    trees.commit(&batches)
}

/// Reads every record of `table`, checking that each is stored under its own name.
fn load_table<V: DeserializeOwned>(
    trees: &Trees,
    table: Table,
    name_of: impl Fn(&V) -> &str,
) -> Result<BTreeMap<String, V>, StoreError> {
    let tree_name = table.name();
    let mut out = BTreeMap::new();
    for item in trees.table(table).iter() {
        let (k, v) = item.map_err(trees.read_err(tree_name))?;
        let value: V = trees.decode(tree_name, &k, &v)?;
        let name = name_of(&value);
        if name.as_bytes() != &k[..] {
            return Err(trees.corrupt(tree_name, &k, format!("it holds the record of '{name}'")));
        }
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

/// Loads the state machine from disk: the state and its position.
pub(crate) fn load(trees: &Trees) -> Result<Applied, StoreError> {
    let (meta, name) = (trees.table(Table::SmMeta), Table::SmMeta.name());
    let last_applied = trees.get(meta, name, LAST_APPLIED)?.flatten();
    let last_membership = trees.get(meta, name, LAST_MEMBERSHIP)?.unwrap_or_default();
    let revision = trees.get(meta, name, REVISION)?.unwrap_or_default();
    let instances = load_table(trees, Table::Instances, |i: &crate::model::Instance| {
        i.name.as_str()
    })?
    .into_values()
    .map(|i| (i.name.clone(), i))
    .collect();
    let mut aliases = BTreeMap::new();
    for item in trees.table(Table::Aliases).iter() {
        let (k, v) = item.map_err(trees.read_err(Table::Aliases.name()))?;
        let fingerprint: String = trees.decode(Table::Aliases.name(), &k, &v)?;
        let alias = String::from_utf8(k.to_vec()).map_err(|_| {
            trees.corrupt(Table::Aliases.name(), &k, "the alias is not utf-8".into())
        })?;
        aliases.insert(alias, fingerprint);
    }
    let cluster = (trees.table(Table::Cluster), Table::Cluster.name());
    let state = ClusterState {
        revision,
        members: load_table(trees, Table::Members, |m: &crate::model::Member| &m.name)?,
        images: load_table(trees, Table::Images, |i: &crate::model::Image| {
            &i.fingerprint
        })?,
        aliases,
        instances,
        ca: trees.get(cluster.0, cluster.1, CA)?,
        tokens: load_table(trees, Table::Tokens, |t: &crate::model::Token| &t.name)?,
        identities: load_table(trees, Table::Identities, |i: &crate::model::Identity| {
            &i.name
        })?,
        scheduler: trees
            .get(cluster.0, cluster.1, SCHEDULER)?
            .unwrap_or_default(),
        placement_groups: trees
            .get(cluster.0, cluster.1, PLACEMENT_GROUPS)?
            .unwrap_or_default(),
        load: Default::default(),
    };
    Ok(Applied {
        last_applied,
        last_membership,
        state,
    })
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    use crate::consensus::store::open;
    use crate::consensus::types::TypeConfig;
    use crate::model::{Command, GroupPolicy, PlacementGroup, SchedulerConfig, Strategy};

    fn normal(index: u64, cmd: Command) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn group(name: &str) -> Command {
        Command::CreatePlacementGroup {
            group: PlacementGroup {
                name: name.into(),
                policy: GroupPolicy::Compact,
                strict: false,
            },
        }
    }

    #[tokio::test]
    async fn scheduler_options_and_placement_groups_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (log, mut sm) = open(dir.path()).await.unwrap();
        let config = SchedulerConfig {
            strategy: Strategy::BinPack,
            default_cpu_millicores: 250,
            ..Default::default()
        };
        let entries = vec![
            normal(
                1,
                Command::SetSchedulerConfig {
                    config: config.clone(),
                },
            ),
            normal(2, group("db")),
            normal(3, group("web")),
            normal(4, Command::DeletePlacementGroup { name: "db".into() }),
        ];
        let responses = sm.apply(entries).await.unwrap();
        assert!(responses.iter().all(|r| r.result.is_ok()), "{responses:?}");
        let before = sm.state().read(Clone::clone);
        drop((log, sm));
        let (_log, sm) = open(dir.path()).await.unwrap();
        let after = sm.state().read(Clone::clone);
        assert_eq!(after.scheduler, config);
        assert!(after.placement_groups.keys().eq(["web"]));
        assert_eq!(after, before);
    }
}
