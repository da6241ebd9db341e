//! The gRPC service (`airlock.v1.Airlock`) and the one place where errors
//! become gRPC statuses.

use std::sync::Arc;

use airlock_protocol::v1::airlock_server::Airlock;
use airlock_protocol::v1::{
    CancelTaskRequest, CancelTaskResponse, ExplainTaskResponse, GetTaskRequest, ListTasksRequest,
    ListTasksResponse, ReloadPolicyRequest, ReloadPolicyResponse, RunTaskRequest, TaskEvent,
    TaskInfo,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::admit::AdmitError;
use crate::supervisor::Supervisor;

/// The service, sharing the supervisor with every task runner.
#[derive(Clone)]
pub struct AirlockService {
    sup: Arc<Supervisor>,
}

impl AirlockService {
    /// A service over `sup`.
    pub fn new(sup: Arc<Supervisor>) -> Self {
        Self { sup }
    }
}

impl From<AdmitError> for Status {
    fn from(err: AdmitError) -> Self {
        let text = err.to_string();
        match err {
            AdmitError::Invalid(_) => Status::invalid_argument(text),
            AdmitError::Denied(_) => Status::permission_denied(text),
            AdmitError::RoleArn(_) | AdmitError::Credentials(_) => Status::invalid_argument(text),
            AdmitError::Duplicate(_) => Status::already_exists(text),
            AdmitError::PoolExhausted(_) => Status::resource_exhausted(text),
            AdmitError::Netns(_) => {
                tracing::error!(err = ?err, "admission failed");
                Status::internal(text)
            }
        }
    }
}

impl From<crate::reload::ReloadError> for Status {
    fn from(err: crate::reload::ReloadError) -> Self {
        Status::failed_precondition(crate::reload::error_text(&err))
    }
}

/// The driver's uid on a Unix socket connection.
fn driver_uid<T>(req: &Request<T>) -> Option<u32> {
    req.extensions()
        .get::<tonic::transport::server::UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
        .map(|cred| cred.uid())
}

/// Who sent `req`: its uid on the Unix socket, or its client
/// certificate's SHA-256 on mTLS.
fn driver<T>(req: &Request<T>) -> crate::audit::Driver {
    crate::audit::Driver {
        driver_uid: driver_uid(req),
        driver_cert_sha256: req
            .peer_certs()
            .and_then(|certs| {
                certs
                    .first()
                    .map(|der| crate::pin::sha256_hex(der.as_ref()))
            })
            .and_then(Result::ok),
    }
}

#[tonic::async_trait]
impl Airlock for AirlockService {
    type RunTaskStream = ReceiverStream<Result<TaskEvent, Status>>;

    async fn run_task(
        &self,
        request: Request<RunTaskRequest>,
    ) -> Result<Response<Self::RunTaskStream>, Status> {
        let driver = driver(&request);
        if self.sup.shutdown.is_cancelled() {
            return Err(Status::unavailable(
                "airlockd is shutting down; retry on another worker",
            ));
        }
        let task = crate::admit::admit(&self.sup, request.into_inner(), &driver)?;
        let (tx, rx) = mpsc::channel(crate::run::EVENTS_QUEUED);
        tokio::spawn(crate::run::run(self.sup.clone(), task, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn cancel_task(
        &self,
        request: Request<CancelTaskRequest>,
    ) -> Result<Response<CancelTaskResponse>, Status> {
        let driver = driver(&request);
        let id = request.into_inner().task_id;
        let found = match self.sup.registry().live.get(&id) {
            Some(live) => {
                live.cancel.cancel();
                true
            }
            None => false,
        };
        // As messages show it: the request may hold megabytes.
        let shown = airlock_policy::clip(&id);
        self.sup.audit.record(&crate::audit::AuditEvent::Cancel {
            task_id: &shown,
            found,
            driver: &driver,
        });
        match found {
            true => Ok(Response::new(CancelTaskResponse {})),
            false => Err(Status::not_found(format!(
                "no live task with id {shown:?} (see `airlock ps`)"
            ))),
        }
    }

    async fn get_task(
        &self,
        request: Request<GetTaskRequest>,
    ) -> Result<Response<TaskInfo>, Status> {
        let id = request.into_inner().task_id;
        let registry = self.sup.registry();
        registry
            .live
            .get(&id)
            .map(|l| l.info.clone())
            .or_else(|| {
                registry
                    .ended
                    .iter()
                    .rev()
                    .find(|(_, t)| t.task_id == id)
                    .map(|(_, t)| t.clone())
            })
            .map(Response::new)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no task with id {:?} is live or recently ended",
                    airlock_policy::clip(&id)
                ))
            })
    }

    async fn explain_task(
        &self,
        request: Request<RunTaskRequest>,
    ) -> Result<Response<ExplainTaskResponse>, Status> {
        let policy = self.sup.policy();
        let explained =
            crate::admit::explain(&policy.policy, &policy.sha256, &request.into_inner())?;
        Ok(Response::new(explained))
    }

    /// Admin only: root on the Unix socket. A TCP (mTLS) caller is a driver,
    /// never an admin.
    async fn reload_policy(
        &self,
        request: Request<ReloadPolicyRequest>,
    ) -> Result<Response<ReloadPolicyResponse>, Status> {
        let caller = driver_uid(&request);
        if caller != Some(0) {
            return Err(Status::permission_denied(
                "reloading the policy is for admins: call as root on airlockd's Unix socket, \
                 or send airlockd SIGHUP",
            ));
        }
        let sup = self.sup.clone();
        let reloaded =
            tokio::task::spawn_blocking(move || crate::reload::reload(&sup, "api", caller))
                .await
                .map_err(|err| Status::internal(format!("reload task failed: {err}")))??;
        Ok(Response::new(ReloadPolicyResponse {
            policy_sha256: reloaded.sha256,
            previous_sha256: reloaded.previous_sha256,
            cluster: reloaded.cluster,
            programs: u32::try_from(reloaded.programs).unwrap_or(u32::MAX),
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let request = request.into_inner();
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<u64>().ok().ok_or_else(|| {
                Status::invalid_argument(
                    "page_token is not one ListTasks gave: pass its next_page_token, or none for the first page",
                )
            })?),
        };
        let (tasks, next) = self.sup.registry().page(request.page_size as usize, after);
        Ok(Response::new(ListTasksResponse {
            tasks,
            next_page_token: next.map(|seq| seq.to_string()).unwrap_or_default(),
        }))
    }
}
