//! The wire form of openraft's messages in `shoal.internal.v1.Raft`: requests, responses and
//! errors as JSON, snapshot data as raw bytes. Client and server both go through here, so the two
//! sides cannot disagree about the encoding.

use openraft::raft::InstallSnapshotRequest;
use openraft::{SnapshotMeta, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shoal_proto::internal::{raft_reply, RaftReply, RaftRequest, RaftSnapshotChunk};
use thiserror::Error;

use crate::consensus::types::{MemberNode, NodeId, TypeConfig};

/// Largest gRPC message either side sends or accepts. AppendEntries batches above it are split
/// (openraft's `PayloadTooLarge`); snapshot chunks are much smaller.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Errors while encoding or decoding a Raft message.
#[derive(Debug, Error)]
pub enum WireError {
    #[error("encoding the {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("decoding the {what}: {source}")]
    Decode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("the {what} carries neither a response nor an error")]
    EmptyReply { what: &'static str },
}

/// What every snapshot chunk repeats besides its data.
#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    vote: Vote<NodeId>,
    meta: SnapshotMeta<NodeId, MemberNode>,
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, WireError> {
    serde_json::to_vec(value).map_err(|source| WireError::Encode { what, source })
}

/// Decodes a JSON payload.
pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, json: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(json).map_err(|source| WireError::Decode { what, source })
}

/// An openraft request as a `RaftRequest`.
pub(crate) fn request<T: Serialize>(what: &'static str, req: &T) -> Result<RaftRequest, WireError> {
    Ok(RaftRequest {
        json: encode(what, req)?,
    })
}

/// The outcome of a Raft call as a `RaftReply`.
pub(crate) fn reply<T: Serialize, E: Serialize>(
    what: &'static str,
    outcome: &Result<T, E>,
) -> Result<RaftReply, WireError> {
    let result = match outcome {
        Ok(resp) => raft_reply::Result::OkJson(encode(what, resp)?),
        Err(err) => raft_reply::Result::ErrorJson(encode(what, err)?),
    };
    Ok(RaftReply {
        result: Some(result),
    })
}

/// A `RaftReply` back into the outcome of the remote Raft call.
pub(crate) fn decode_reply<T: DeserializeOwned, E: DeserializeOwned>(
    what: &'static str,
    reply: RaftReply,
) -> Result<Result<T, E>, WireError> {
    match reply.result {
        Some(raft_reply::Result::OkJson(json)) => decode(what, &json).map(Ok),
        Some(raft_reply::Result::ErrorJson(json)) => decode(what, &json).map(Err),
        None => Err(WireError::EmptyReply { what }),
    }
}

/// One chunk of a snapshot as a `RaftSnapshotChunk`; the data is moved, not copied.
pub(crate) fn snapshot_chunk(
    req: InstallSnapshotRequest<TypeConfig>,
) -> Result<RaftSnapshotChunk, WireError> {
    let header = SnapshotHeader {
        vote: req.vote,
        meta: req.meta,
    };
    Ok(RaftSnapshotChunk {
        header_json: encode("snapshot chunk header", &header)?,
        offset: req.offset,
        data: req.data,
        done: req.done,
    })
}

/// A `RaftSnapshotChunk` back into openraft's request.
pub(crate) fn decode_snapshot_chunk(
    chunk: RaftSnapshotChunk,
) -> Result<InstallSnapshotRequest<TypeConfig>, WireError> {
    let header: SnapshotHeader = decode("snapshot chunk header", &chunk.header_json)?;
    Ok(InstallSnapshotRequest {
        vote: header.vote,
        meta: header.meta,
        offset: chunk.offset,
        data: chunk.data,
        done: chunk.done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Command, Member};
    use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, SnapshotSegmentId};

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    #[test]
    fn append_entries_request_round_trips() {
        let cmd = Command::RegisterMember {
            member: Member {
                id: 2,
                name: "a".into(),
                address: "127.0.0.1:7443".into(),
                architecture: "x86_64".into(),
                failure_domain: "default".into(),
                joined_at_ms: 5,
                ..Default::default()
            },
        };
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(3, 9)),
            entries: vec![Entry {
                log_id: log_id(3, 10),
                payload: EntryPayload::Normal(cmd),
            }],
            leader_commit: Some(log_id(3, 9)),
        };
        let wire = request("append entries request", &req).unwrap();
        let back: AppendEntriesRequest<TypeConfig> =
            decode("append entries request", &wire.json).unwrap();
        assert_eq!(back.vote, req.vote);
        assert_eq!(back.prev_log_id, req.prev_log_id);
        assert_eq!(back.leader_commit, req.leader_commit);
        assert_eq!(back.entries.len(), 1);
        assert_eq!(back.entries[0].log_id, log_id(3, 10));
        match (&back.entries[0].payload, &req.entries[0].payload) {
            (EntryPayload::Normal(a), EntryPayload::Normal(b)) => assert_eq!(a, b),
            _ => panic!("payload changed"),
        }
    }

    #[test]
    fn snapshot_chunk_keeps_data_binary() {
        let data: Vec<u8> = (0..=255).collect();
        let req = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(2, 40)),
                snapshot_id: "2-40-1".into(),
                ..Default::default()
            },
            offset: 4096,
            data: data.clone(),
            done: true,
        };
        let chunk = snapshot_chunk(req).unwrap();
        assert_eq!(chunk.data, data, "data travels as bytes, not JSON");
        assert!(!chunk.header_json.is_empty());
        let back = decode_snapshot_chunk(chunk).unwrap();
        assert_eq!(back.vote, Vote::new_committed(2, 1));
        assert_eq!(back.meta.last_log_id, Some(log_id(2, 40)));
        assert_eq!(back.meta.snapshot_id, "2-40-1");
        assert_eq!((back.offset, back.done), (4096, true));
        assert_eq!(back.data, data);
    }

    #[test]
    fn reply_carries_response_or_remote_error() {
        let ok: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
            Ok(AppendEntriesResponse::Success);
        let back: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = decode_reply(
            "append entries reply",
            reply("append entries reply", &ok).unwrap(),
        )
        .unwrap();
        assert_eq!(back, ok);

        let err: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
            Err(RaftError::Fatal(Fatal::Stopped));
        let back: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = decode_reply(
            "append entries reply",
            reply("append entries reply", &err).unwrap(),
        )
        .unwrap();
        assert_eq!(back, err);

        let mismatch: Result<(), RaftError<NodeId, InstallSnapshotError>> = Err(
            RaftError::APIError(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect: SnapshotSegmentId {
                    id: "a".into(),
                    offset: 0,
                },
                got: SnapshotSegmentId {
                    id: "b".into(),
                    offset: 7,
                },
            })),
        );
        let back: Result<(), RaftError<NodeId, InstallSnapshotError>> =
            decode_reply("install snapshot reply", reply("x", &mismatch).unwrap()).unwrap();
        assert_eq!(back, mismatch);
    }

    #[test]
    fn empty_or_garbled_reply_is_an_error() {
        let empty = RaftReply { result: None };
        let r =
            decode_reply::<AppendEntriesResponse<NodeId>, RaftError<NodeId>>("vote reply", empty);
        assert!(matches!(
            r,
            Err(WireError::EmptyReply { what: "vote reply" })
        ));
        let garbled = RaftReply {
            result: Some(raft_reply::Result::OkJson(b"{".to_vec())),
        };
        let r =
            decode_reply::<AppendEntriesResponse<NodeId>, RaftError<NodeId>>("vote reply", garbled);
        assert!(matches!(r, Err(WireError::Decode { .. })));
    }
}
