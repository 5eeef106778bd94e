//! The fake services behind the test harness.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use shoal_proto::api::exec_input::Input;
use shoal_proto::api::exec_output::Output;
use shoal_proto::api::import_image_chunk::Chunk;
use shoal_proto::api::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// What the fake remembers; tests read it to check what the CLI sent.
#[derive(Default)]
pub struct State {
    pub instances: BTreeMap<String, Instance>,
    pub images: Vec<Image>,
    pub ops: HashMap<String, Operation>,
    pub next_op: u64,
    /// Per import: header aliases, header size, bytes received, largest chunk.
    pub imports: Vec<(Vec<String>, u64, usize, usize)>,
    /// Every ExecStart received.
    pub execs: Vec<ExecStart>,
}

#[derive(Clone)]
pub struct Fake {
    pub state: Arc<Mutex<State>>,
}

type Res<T> = Result<Response<T>, Status>;

fn status(state: InstanceState) -> Option<InstanceStatus> {
    Some(InstanceStatus {
        state: state as i32,
        observed_revision: 1,
        message: String::new(),
        init_pid: if state == InstanceState::Running {
            4242
        } else {
            0
        },
        usage: (state == InstanceState::Running).then_some(ResourceUsage {
            memory_bytes: 8 << 20,
            cpu_nanos: 2_000_000_000,
            processes: 2,
        }),
        updated_at_ms: 1_700_000_000_000,
    })
}

impl Fake {
    /// Records an operation whose outcome Wait will report.
    fn op(&self, what: &str, instance: &str, failure: Option<String>) -> Operation {
        let mut s = self.state.lock().unwrap();
        s.next_op += 1;
        let id = format!("op-{}", s.next_op);
        let done = Operation {
            id: id.clone(),
            description: format!("{what} instance {instance}"),
            status: if failure.is_some() {
                OperationStatus::Failure
            } else {
                OperationStatus::Success
            } as i32,
            message: failure.unwrap_or_default(),
            instance: instance.to_string(),
            created_at_ms: 1,
            updated_at_ms: 2,
        };
        s.ops.insert(id, done.clone());
        Operation {
            status: OperationStatus::Running as i32,
            message: String::new(),
            ..done
        }
    }

    /// Sets the observed state of an existing instance.
    fn change(&self, name: &str, what: &str, to: InstanceState) -> Res<Operation> {
        {
            let mut s = self.state.lock().unwrap();
            let Some(i) = s.instances.get_mut(name) else {
                return Err(Status::not_found(format!("instance {name} not found")));
            };
            i.desired = to as i32;
            i.status = status(to);
        }
        Ok(Response::new(self.op(what, name, None)))
    }
}

#[tonic::async_trait]
impl instances_server::Instances for Fake {
    async fn create(&self, r: Request<CreateInstanceRequest>) -> Res<Operation> {
        let r = r.into_inner();
        if r.config.keys().any(|k| k == "bogus") {
            return Err(Status::invalid_argument("unknown config key bogus"));
        }
        let failure = (r.image == "missing").then(|| format!("image {:?} not found", r.image));
        {
            let mut s = self.state.lock().unwrap();
            if s.instances.contains_key(&r.name) {
                return Err(Status::already_exists(format!(
                    "instance {} already exists",
                    r.name
                )));
            }
            let state = if r.start {
                InstanceState::Running
            } else {
                InstanceState::Stopped
            };
            let location = if r.target.is_empty() {
                "node-1".to_string()
            } else {
                r.target.clone()
            };
            s.instances.insert(
                r.name.clone(),
                Instance {
                    name: r.name.clone(),
                    image_fingerprint: "f".repeat(64),
                    image: r.image.clone(),
                    config: r.config.clone(),
                    desired: state as i32,
                    status: status(state),
                    location,
                    created_at_ms: 1_700_000_000_000,
                    version: 1,
                    desired_revision: 1,
                },
            );
        }
        Ok(Response::new(self.op("create", &r.name, failure)))
    }

    async fn get(&self, r: Request<GetInstanceRequest>) -> Res<Instance> {
        let name = r.into_inner().name;
        let s = self.state.lock().unwrap();
        match s.instances.get(&name) {
            Some(i) => Ok(Response::new(i.clone())),
            None => Err(Status::not_found(format!("instance {name} not found"))),
        }
    }

    async fn list(&self, _: Request<ListInstancesRequest>) -> Res<ListInstancesResponse> {
        let s = self.state.lock().unwrap();
        Ok(Response::new(ListInstancesResponse {
            instances: s.instances.values().cloned().collect(),
        }))
    }

    async fn start(&self, r: Request<StartInstanceRequest>) -> Res<Operation> {
        self.change(&r.into_inner().name, "start", InstanceState::Running)
    }

    async fn stop(&self, r: Request<StopInstanceRequest>) -> Res<Operation> {
        let r = r.into_inner();
        if r.name == "stuck" {
            return Ok(Response::new(self.op(
                "stop",
                &r.name,
                Some("init did not stop".into()),
            )));
        }
        self.change(&r.name, "stop", InstanceState::Stopped)
    }

    async fn restart(&self, r: Request<RestartInstanceRequest>) -> Res<Operation> {
        self.change(&r.into_inner().name, "restart", InstanceState::Running)
    }

    async fn freeze(&self, r: Request<FreezeInstanceRequest>) -> Res<Operation> {
        self.change(&r.into_inner().name, "freeze", InstanceState::Frozen)
    }

    async fn unfreeze(&self, r: Request<UnfreezeInstanceRequest>) -> Res<Operation> {
        self.change(&r.into_inner().name, "unfreeze", InstanceState::Running)
    }

    async fn delete(&self, r: Request<DeleteInstanceRequest>) -> Res<Operation> {
        let r = r.into_inner();
        {
            let mut s = self.state.lock().unwrap();
            let Some(i) = s.instances.get(&r.name) else {
                return Err(Status::not_found(format!("instance {} not found", r.name)));
            };
            let running = i.status.as_ref().map(|s| s.state) == Some(InstanceState::Running as i32);
            if running && !r.force {
                return Err(Status::failed_precondition(format!(
                    "instance {} is running: stop it or use --force",
                    r.name
                )));
            }
            s.instances.remove(&r.name);
        }
        Ok(Response::new(self.op("delete", &r.name, None)))
    }

    type ExecStream = ReceiverStream<Result<ExecOutput, Status>>;

    async fn exec(&self, r: Request<Streaming<ExecInput>>) -> Res<Self::ExecStream> {
        let mut input = r.into_inner();
        let start = match input.next().await {
            Some(Ok(ExecInput {
                input: Some(Input::Start(s)),
            })) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "the first exec message must carry start",
                ))
            }
        };
        self.state.lock().unwrap().execs.push(start.clone());
        if !self
            .state
            .lock()
            .unwrap()
            .instances
            .contains_key(&start.instance)
        {
            return Err(Status::not_found(format!(
                "instance {} not found",
                start.instance
            )));
        }
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let out = |o| Ok(ExecOutput { output: Some(o) });
            let cmd: Vec<&str> = start.command.iter().map(String::as_str).collect();
            let code = match cmd.as_slice() {
                ["exit", n] => n.parse().unwrap_or(255),
                ["echo", rest @ ..] => {
                    let _ = tx
                        .send(out(Output::Stdout(
                            format!("{}\n", rest.join(" ")).into_bytes(),
                        )))
                        .await;
                    0
                }
                ["err"] => {
                    let _ = tx.send(out(Output::Stderr(b"oops\n".to_vec()))).await;
                    3
                }
                ["tty"] => {
                    let line = format!(
                        "tty={} rows={} cols={}\n",
                        start.tty, start.rows, start.cols
                    );
                    let _ = tx.send(out(Output::Stdout(line.into_bytes()))).await;
                    0
                }
                ["winch"] => loop {
                    match input.next().await {
                        Some(Ok(ExecInput {
                            input: Some(Input::Resize(t)),
                        })) => {
                            let line = format!("resize {} {}\n", t.rows, t.cols);
                            let _ = tx.send(out(Output::Stdout(line.into_bytes()))).await;
                            break 0;
                        }
                        Some(Ok(_)) => {}
                        _ => break 1,
                    }
                },
                ["cat"] => loop {
                    match input.next().await {
                        Some(Ok(ExecInput {
                            input: Some(Input::Stdin(b)),
                        })) => {
                            let _ = tx.send(out(Output::Stdout(b))).await;
                        }
                        Some(Ok(ExecInput {
                            input: Some(Input::CloseStdin(_)),
                        }))
                        | None => break 0,
                        Some(Ok(_)) => {}
                        Some(Err(_)) => break 1,
                    }
                },
                _ => 127,
            };
            let _ = tx.send(out(Output::ExitCode(code))).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl images_server::Images for Fake {
    async fn import(&self, r: Request<Streaming<ImportImageChunk>>) -> Res<Image> {
        let mut stream = r.into_inner();
        let header = match stream.next().await {
            Some(Ok(ImportImageChunk {
                chunk: Some(Chunk::Header(h)),
            })) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first import message must carry the header",
                ))
            }
        };
        let (mut total, mut largest) = (0usize, 0usize);
        while let Some(m) = stream.next().await {
            match m?.chunk {
                Some(Chunk::Data(d)) => {
                    total += d.len();
                    largest = largest.max(d.len());
                }
                _ => return Err(Status::invalid_argument("a second header")),
            }
        }
        let img = Image {
            fingerprint: format!("{total:064x}"),
            aliases: header.aliases.clone(),
            os: "busybox".into(),
            release: "1.36".into(),
            architecture: "x86_64".into(),
            description: "test image".into(),
            stop_signal: "SIGUSR2".into(),
            size: total as u64,
            created_at_ms: 1_700_000_000_000,
            locations: vec!["node-1".into()],
        };
        let mut s = self.state.lock().unwrap();
        s.imports
            .push((header.aliases, header.size, total, largest));
        s.images.push(img.clone());
        Ok(Response::new(img))
    }

    async fn list(&self, _: Request<ListImagesRequest>) -> Res<ListImagesResponse> {
        let images = self.state.lock().unwrap().images.clone();
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn get(&self, r: Request<GetImageRequest>) -> Res<Image> {
        let name = r.into_inner().image;
        let s = self.state.lock().unwrap();
        s.images
            .iter()
            .find(|i| i.fingerprint.starts_with(&name) || i.aliases.contains(&name))
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("image {name} not found")))
    }

    async fn delete(&self, r: Request<DeleteImageRequest>) -> Res<DeleteImageResponse> {
        let name = r.into_inner().image;
        let mut s = self.state.lock().unwrap();
        let before = s.images.len();
        s.images
            .retain(|i| !(i.fingerprint.starts_with(&name) || i.aliases.contains(&name)));
        if s.images.len() == before {
            return Err(Status::not_found(format!("image {name} not found")));
        }
        Ok(Response::new(DeleteImageResponse {}))
    }

    async fn set_alias(&self, r: Request<SetAliasRequest>) -> Res<Image> {
        let r = r.into_inner();
        let mut s = self.state.lock().unwrap();
        for i in &mut s.images {
            i.aliases.retain(|a| a != &r.alias);
        }
        let Some(img) = s
            .images
            .iter_mut()
            .find(|i| i.fingerprint.starts_with(&r.image))
        else {
            return Err(Status::not_found(format!("image {} not found", r.image)));
        };
        img.aliases.push(r.alias);
        Ok(Response::new(img.clone()))
    }

    async fn delete_alias(&self, r: Request<DeleteAliasRequest>) -> Res<DeleteAliasResponse> {
        let alias = r.into_inner().alias;
        let mut s = self.state.lock().unwrap();
        let Some(img) = s.images.iter_mut().find(|i| i.aliases.contains(&alias)) else {
            return Err(Status::not_found(format!("alias {alias} not found")));
        };
        img.aliases.retain(|a| a != &alias);
        Ok(Response::new(DeleteAliasResponse {}))
    }
}

#[tonic::async_trait]
impl operations_server::Operations for Fake {
    async fn get(&self, r: Request<GetOperationRequest>) -> Res<Operation> {
        let id = r.into_inner().id;
        let s = self.state.lock().unwrap();
        s.ops
            .get(&id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("operation {id} not found")))
    }

    type WaitStream = ReceiverStream<Result<Operation, Status>>;

    async fn wait(&self, r: Request<WaitOperationRequest>) -> Res<Self::WaitStream> {
        let id = r.into_inner().id;
        let done = self.state.lock().unwrap().ops.get(&id).cloned();
        let Some(done) = done else {
            return Err(Status::not_found(format!("operation {id} not found")));
        };
        let (tx, rx) = mpsc::channel(4);
        let running = Operation {
            status: OperationStatus::Running as i32,
            message: "working".into(),
            ..done.clone()
        };
        tx.send(Ok(running)).await.unwrap();
        tx.send(Ok(done)).await.unwrap();
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl cluster_server::Cluster for Fake {
    async fn list_members(&self, _: Request<ListMembersRequest>) -> Res<ListMembersResponse> {
        let m = |name: &str, roles: &[&str], status: &str| Member {
            name: name.into(),
            address: format!("198.18.0.{}:8443", &name[5..]),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            status: status.into(),
            failure_domain: "default".into(),
            message: String::new(),
            architecture: "x86_64".into(),
            id: 0,
        };
        Ok(Response::new(ListMembersResponse {
            members: vec![
                m("node-2", &["voter"], "Offline"),
                m("node-1", &["leader", "voter"], "Online"),
            ],
        }))
    }

    // The cluster calls below are tested against real daemons in /work/main/tests.
    async fn show(&self, _: Request<ShowClusterRequest>) -> Res<ShowClusterResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn create_token(&self, _: Request<CreateTokenRequest>) -> Res<CreateTokenResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn remove_member(&self, _: Request<RemoveMemberRequest>) -> Res<RemoveMemberResponse> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn enroll(&self, _: Request<EnrollRequest>) -> Res<EnrollResponse> {
        Err(Status::unimplemented("not in the fake"))
    }
}
