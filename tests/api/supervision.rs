//! Black-box tests of the supervision tree: real ractor actors under a `SyncSupervisor`, built
//! by a test `ChildFactory`, with tokio's clock paused so backoff delays pass at once yet in
//! order (ractor's timers run on tokio time). Nothing here sleeps on the wall clock: waits are
//! bounded `eventually` polls.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mcss::actors::supervisor::{
    self, wait_for_root_exit, ChildFactory, ChildKey, ChildState, ChildStatus, DegradedSink,
    RootExit, SupervisorArgs, SupervisorMsg,
};
use mcss::actors::StoreDegradedSink;
use mcss::config::{Settings, SupervisionSettings};
use mcss::domain::{AccountId, CalendarId};
use mcss::shutdown::Shutdown;
use mcss::store::{AccountStatus, NewAccount, Store};
use ractor::{
    call_t, Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort,
    SpawnErr,
};
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Milliseconds a test waits for an answer from an actor.
const CALL_TIMEOUT_MS: u64 = 5_000;

fn calendar(n: i64) -> ChildKey {
    ChildKey::Calendar(AccountId::new(n))
}

fn writer(n: i64) -> ChildKey {
    ChildKey::Writer(AccountId::new(n))
}

fn settings(max_restarts: u32) -> SupervisionSettings {
    SupervisionSettings {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        max_restarts,
        window: Duration::from_secs(600),
    }
}

/// Polls `probe` until it yields a value, for at most 20 s of (paused) tokio time.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..2_000 {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting until {what}");
}

// ------------------------------------------------------------------------------------------
// A test child and the factory that builds it
// ------------------------------------------------------------------------------------------

enum TestChildMsg {
    /// Panic in the handler.
    Panic,
    /// Return an error from the handler.
    Fail,
    /// Stop on its own, as if its work were done: nobody asked it to.
    StopSelf,
    /// Note that this message was handled (observes draining).
    Work(u32),
    Ping(RpcReplyPort<()>),
}

struct TestChild;

struct TestChildArgs {
    key: ChildKey,
    fail_pre_start: bool,
    log: Arc<Log>,
}

struct TestChildState {
    key: ChildKey,
    log: Arc<Log>,
}

#[ractor::async_trait]
impl Actor for TestChild {
    type Msg = TestChildMsg;
    type State = TestChildState;
    type Arguments = TestChildArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: TestChildArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        if args.fail_pre_start {
            return Err("the store is not reachable".into());
        }
        args.log.started(args.key, myself.get_id());
        Ok(TestChildState {
            key: args.key,
            log: args.log,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TestChildMsg::Panic => panic!("boom: the test asked for a panic"),
            TestChildMsg::Fail => return Err("boom: the test asked for a failure".into()),
            TestChildMsg::StopSelf => myself.stop(Some("done".to_owned())),
            TestChildMsg::Work(n) => {
                // Slow enough that a stop would find work still queued.
                tokio::time::sleep(Duration::from_millis(10)).await;
                state.log.worked(state.key, n);
            }
            TestChildMsg::Ping(reply) => {
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.log.stopped_gracefully(state.key);
        Ok(())
    }
}

/// What happened to the test children, shared by the factory and every child it built.
#[derive(Default)]
struct Log {
    inner: Mutex<LogInner>,
}

#[derive(Default)]
struct LogInner {
    attempts: Vec<ChildKey>,
    starts: Vec<(ChildKey, ActorId, Instant)>,
    graceful_stops: Vec<ChildKey>,
    work: Vec<(ChildKey, u32)>,
    /// Spawns still to fail, per key.
    failing_spawns: HashMap<ChildKey, u32>,
    /// When set, every spawn waits at this barrier first: it returns only once as many
    /// spawns as the barrier counts are in flight at the same time.
    gate: Option<Arc<tokio::sync::Barrier>>,
}

impl Log {
    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner
            .lock()
            .expect("no test thread panicked holding the log")
    }

    fn started(&self, key: ChildKey, id: ActorId) {
        self.lock().starts.push((key, id, Instant::now()));
    }

    fn stopped_gracefully(&self, key: ChildKey) {
        self.lock().graceful_stops.push(key);
    }

    fn worked(&self, key: ChildKey, n: u32) {
        self.lock().work.push((key, n));
    }

    fn attempts(&self, key: ChildKey) -> usize {
        self.lock().attempts.iter().filter(|k| **k == key).count()
    }

    fn starts(&self, key: ChildKey) -> Vec<(ActorId, Instant)> {
        self.lock()
            .starts
            .iter()
            .filter(|(k, _, _)| *k == key)
            .map(|(_, id, at)| (*id, *at))
            .collect()
    }

    fn graceful_stops(&self) -> Vec<ChildKey> {
        self.lock().graceful_stops.clone()
    }

    fn work(&self, key: ChildKey) -> Vec<u32> {
        self.lock()
            .work
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, n)| *n)
            .collect()
    }

    fn gate_spawns_until_in_flight(&self, together: usize) {
        self.lock().gate = Some(Arc::new(tokio::sync::Barrier::new(together)));
    }

    fn gate(&self) -> Option<Arc<tokio::sync::Barrier>> {
        self.lock().gate.clone()
    }

    fn attempt_order(&self) -> Vec<ChildKey> {
        self.lock().attempts.clone()
    }

    fn fail_next_spawns(&self, key: ChildKey, count: u32) {
        self.lock().failing_spawns.insert(key, count);
    }

    /// Records an attempt and says whether it should fail.
    fn attempt(&self, key: ChildKey) -> bool {
        let mut inner = self.lock();
        inner.attempts.push(key);
        match inner.failing_spawns.get_mut(&key) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }
}

struct TestFactory {
    log: Arc<Log>,
}

#[async_trait]
impl ChildFactory for TestFactory {
    async fn spawn(&self, key: ChildKey, supervisor: ActorCell) -> Result<ActorCell, SpawnErr> {
        let fail_pre_start = self.log.attempt(key);
        if let Some(gate) = self.log.gate() {
            gate.wait().await;
        }
        let args = TestChildArgs {
            key,
            fail_pre_start,
            log: self.log.clone(),
        };
        let (child, _handle) = Actor::spawn_linked(None, TestChild, args, supervisor).await?;
        Ok(child.get_cell())
    }
}

#[derive(Default)]
struct RecordingSink {
    degraded: Mutex<Vec<(ChildKey, String)>>,
}

impl RecordingSink {
    fn degraded(&self) -> Vec<(ChildKey, String)> {
        self.degraded
            .lock()
            .expect("no test thread panicked holding the sink")
            .clone()
    }
}

#[async_trait]
impl DegradedSink for RecordingSink {
    async fn child_degraded(&self, key: ChildKey, reason: String) {
        self.degraded
            .lock()
            .expect("no test thread panicked holding the sink")
            .push((key, reason));
    }
}

// ------------------------------------------------------------------------------------------
// The tree under test
// ------------------------------------------------------------------------------------------

struct Tree {
    supervisor: ActorRef<SupervisorMsg>,
    handle: JoinHandle<()>,
    log: Arc<Log>,
    sink: Arc<RecordingSink>,
    settings: SupervisionSettings,
}

impl Tree {
    async fn start(settings: SupervisionSettings) -> Self {
        Self::start_with_sink(settings, None).await
    }

    /// A tree whose degraded children go to `degraded` instead of the recording sink.
    async fn start_with_sink(
        settings: SupervisionSettings,
        degraded: Option<Arc<dyn DegradedSink>>,
    ) -> Self {
        let log = Arc::new(Log::default());
        let sink = Arc::new(RecordingSink::default());
        let args = SupervisorArgs {
            settings: settings.clone(),
            factory: Arc::new(TestFactory { log: log.clone() }),
            degraded: degraded.unwrap_or_else(|| sink.clone()),
            stop_grace: Duration::from_secs(2),
        };
        let (supervisor, handle) = supervisor::start_supervisor(args)
            .await
            .expect("the supervisor starts");
        Self {
            supervisor,
            handle,
            log,
            sink,
            settings,
        }
    }

    fn add(&self, key: ChildKey) {
        self.supervisor
            .cast(SupervisorMsg::AddChild(key))
            .expect("the supervisor is alive");
    }

    async fn children(&self) -> Vec<ChildStatus> {
        call_t!(self.supervisor, SupervisorMsg::Children, CALL_TIMEOUT_MS)
            .expect("the supervisor answers")
    }

    async fn status(&self, key: ChildKey) -> ChildStatus {
        self.children()
            .await
            .into_iter()
            .find(|status| status.key == key)
            .unwrap_or_else(|| panic!("{key} is supervised"))
    }

    async fn lookup(&self, key: ChildKey) -> Option<ActorCell> {
        call_t!(self.supervisor, SupervisorMsg::Lookup, CALL_TIMEOUT_MS, key)
            .expect("the supervisor answers")
    }

    /// The running actor of `key`, once there is one that is not `previous`.
    async fn running_other_than(&self, key: ChildKey, previous: Option<ActorId>) -> ActorCell {
        eventually(&format!("{key} runs a new actor"), || async {
            self.lookup(key)
                .await
                .filter(|cell| Some(cell.get_id()) != previous)
        })
        .await
    }

    async fn running(&self, key: ChildKey) -> ActorCell {
        self.running_other_than(key, None).await
    }

    /// Lets every timer the supervisor could have set fire, in paused time.
    async fn let_all_backoffs_pass(&self) {
        tokio::time::sleep(self.settings.backoff_max * 10).await;
    }
}

fn send(cell: &ActorCell, message: TestChildMsg) {
    ActorRef::<TestChildMsg>::from(cell.clone())
        .cast(message)
        .expect("the child is alive");
}

async fn ping(cell: &ActorCell) {
    let child = ActorRef::<TestChildMsg>::from(cell.clone());
    call_t!(child, TestChildMsg::Ping, CALL_TIMEOUT_MS).expect("the child answers");
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_panicking_child_is_restarted_after_backoff_while_its_sibling_runs_untouched() {
    let tree = Tree::start(settings(5)).await;
    tree.add(calendar(1));
    tree.add(writer(2));
    let crashing = tree.running(calendar(1)).await;
    let sibling = tree.running(writer(2)).await;
    let crashed_at = Instant::now();

    send(&crashing, TestChildMsg::Panic);

    let replacement = tree
        .running_other_than(calendar(1), Some(crashing.get_id()))
        .await;
    let starts = tree.log.starts(calendar(1));
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[1].0, replacement.get_id());
    assert!(
        starts[1].1 - crashed_at >= tree.settings.backoff_initial,
        "restarted after {:?}, before the initial backoff",
        starts[1].1 - crashed_at
    );
    let status = tree.status(calendar(1)).await;
    assert_eq!(status.state, ChildState::Running);
    assert_eq!(status.restarts, 1);
    assert!(
        status
            .last_failure
            .as_deref()
            .unwrap_or("")
            .contains("boom"),
        "{status:?}"
    );

    let sibling_now = tree.lookup(writer(2)).await.expect("the sibling runs");
    assert_eq!(sibling_now.get_id(), sibling.get_id());
    assert_eq!(tree.log.starts(writer(2)).len(), 1);
    assert_eq!(tree.status(writer(2)).await.restarts, 0);
    ping(&sibling).await;
}

#[tokio::test(start_paused = true)]
async fn a_child_failing_more_than_max_restarts_within_the_window_is_degraded_and_left_alone() {
    let tree = Tree::start(settings(2)).await;
    tree.add(calendar(1));
    tree.add(calendar(2));
    let sibling = tree.running(calendar(2)).await;

    let mut previous = None;
    for _ in 0..3 {
        let child = tree.running_other_than(calendar(1), previous).await;
        previous = Some(child.get_id());
        send(&child, TestChildMsg::Fail);
    }

    let degraded = eventually("calendar 1 is degraded", || async {
        let status = tree.status(calendar(1)).await;
        (status.state == ChildState::Degraded).then_some(status)
    })
    .await;
    assert_eq!(degraded.restarts, 2);
    let reported = tree.sink.degraded();
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0].0, calendar(1));
    assert!(reported[0].1.contains("boom"), "{reported:?}");

    tree.let_all_backoffs_pass().await;

    assert_eq!(
        tree.log.starts(calendar(1)).len(),
        3,
        "no start after degrading"
    );
    assert_eq!(tree.status(calendar(1)).await.state, ChildState::Degraded);
    assert!(tree.lookup(calendar(1)).await.is_none());
    let sibling_now = tree.lookup(calendar(2)).await.expect("the sibling runs");
    assert_eq!(sibling_now.get_id(), sibling.get_id());
    ping(&sibling).await;
}

#[tokio::test(start_paused = true)]
async fn an_operator_reset_brings_a_degraded_child_back() {
    let tree = Tree::start(settings(0)).await;
    tree.add(calendar(1));
    let first = tree.running(calendar(1)).await;
    send(&first, TestChildMsg::Fail);
    eventually("calendar 1 is degraded", || async {
        (tree.status(calendar(1)).await.state == ChildState::Degraded).then_some(())
    })
    .await;

    tree.supervisor
        .cast(SupervisorMsg::ResetDegraded(calendar(1)))
        .expect("the supervisor is alive");

    let resumed = tree
        .running_other_than(calendar(1), Some(first.get_id()))
        .await;
    ping(&resumed).await;
    assert_eq!(tree.status(calendar(1)).await.state, ChildState::Running);
}

#[tokio::test(start_paused = true)]
async fn a_removed_child_is_stopped_gracefully_and_never_restarted() {
    let tree = Tree::start(settings(5)).await;
    tree.add(calendar(1));
    tree.add(writer(1));
    let removed = tree.running(calendar(1)).await;
    let kept = tree.running(writer(1)).await;

    call_t!(
        tree.supervisor,
        SupervisorMsg::RemoveChild,
        CALL_TIMEOUT_MS,
        calendar(1)
    )
    .expect("the supervisor answers");

    assert_eq!(removed.get_status(), ActorStatus::Stopped);
    assert_eq!(tree.log.graceful_stops(), vec![calendar(1)]);
    tree.let_all_backoffs_pass().await;
    assert_eq!(tree.log.starts(calendar(1)).len(), 1);
    assert!(tree.lookup(calendar(1)).await.is_none());
    let keys: Vec<_> = tree.children().await.into_iter().map(|s| s.key).collect();
    assert_eq!(keys, vec![writer(1)]);
    assert!(tree.sink.degraded().is_empty());
    ping(&kept).await;
}

#[tokio::test(start_paused = true)]
async fn many_children_added_at_once_start_side_by_side_writers_first() {
    // Arrange: each spawn returns only once 8 are in flight together, so children started
    // one after another would never start at all.
    let tree = Tree::start(settings(5)).await;
    tree.log.gate_spawns_until_in_flight(8);
    let keys: Vec<ChildKey> = (1..=16).flat_map(|n| [calendar(n), writer(n)]).collect();

    // Act
    let answer = tree
        .supervisor
        .call(
            |reply| SupervisorMsg::AddChildren(keys.clone(), Some(reply)),
            Some(Duration::from_millis(CALL_TIMEOUT_MS)),
        )
        .await
        .expect("the supervisor is alive");

    // Assert: all 32 run, and every writer was started before any calendar (a calendar's
    // first sync wakes its writers by name).
    assert!(
        matches!(answer, ractor::rpc::CallResult::Success(())),
        "the batch was answered"
    );
    let running = tree
        .children()
        .await
        .into_iter()
        .filter(|s| s.state == ChildState::Running)
        .count();
    assert_eq!(running, keys.len());
    let order = tree.log.attempt_order();
    assert_eq!(order.len(), keys.len());
    assert!(
        order[..16].iter().all(|k| matches!(k, ChildKey::Writer(_))),
        "{order:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_child_whose_start_fails_is_retried_until_the_factory_succeeds() {
    let tree = Tree::start(settings(5)).await;
    tree.log.fail_next_spawns(calendar(1), 2);

    tree.add(calendar(1));

    let child = tree.running(calendar(1)).await;
    ping(&child).await;
    assert_eq!(tree.log.attempts(calendar(1)), 3);
    assert_eq!(tree.log.starts(calendar(1)).len(), 1);
    let status = tree.status(calendar(1)).await;
    assert_eq!(status.restarts, 2);
    assert!(
        status
            .last_failure
            .as_deref()
            .unwrap_or("")
            .contains("the store is not reachable"),
        "{status:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_child_that_stops_without_being_asked_is_restarted() {
    let tree = Tree::start(settings(5)).await;
    tree.add(writer(1));
    let first = tree.running(writer(1)).await;

    send(&first, TestChildMsg::StopSelf);

    let second = tree
        .running_other_than(writer(1), Some(first.get_id()))
        .await;
    ping(&second).await;
    let status = tree.status(writer(1)).await;
    assert_eq!(status.restarts, 1);
    assert!(
        status
            .last_failure
            .as_deref()
            .unwrap_or("")
            .contains("stopped unexpectedly"),
        "{status:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_killed_root_supervisor_ends_its_task_and_means_a_non_zero_exit() {
    let mut tree = Tree::start(settings(5)).await;
    tree.add(calendar(1));
    let child = tree.running(calendar(1)).await;
    let shutdown = Shutdown::new();

    tree.supervisor.kill();

    let exit = tokio::time::timeout(
        Duration::from_secs(5),
        wait_for_root_exit(&mut tree.handle, &shutdown),
    )
    .await
    .expect("the root's task ends once it is killed");
    assert!(matches!(exit, RootExit::Unexpected { .. }), "{exit:?}");
    assert_eq!(supervisor::supervisor_exit_code(&exit), 1);
    eventually("the child died with its supervisor", || async {
        (child.get_status() == ActorStatus::Stopped).then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_requested_shutdown_stops_every_child_gracefully_and_means_exit_zero() {
    let mut tree = Tree::start(settings(5)).await;
    tree.add(calendar(1));
    tree.add(writer(1));
    tree.running(calendar(1)).await;
    tree.running(writer(1)).await;
    let shutdown = Shutdown::new();

    shutdown.trigger();
    call_t!(tree.supervisor, SupervisorMsg::Shutdown, CALL_TIMEOUT_MS)
        .expect("the supervisor answers");
    let exit = tokio::time::timeout(
        Duration::from_secs(5),
        wait_for_root_exit(&mut tree.handle, &shutdown),
    )
    .await
    .expect("the root's task ends after shutdown");

    assert_eq!(exit, RootExit::Requested);
    assert_eq!(supervisor::supervisor_exit_code(&exit), 0);
    let mut stopped = tree.log.graceful_stops();
    stopped.sort();
    assert_eq!(stopped, vec![calendar(1), writer(1)]);
    assert_eq!(
        tree.log.starts(calendar(1)).len(),
        1,
        "no restart at shutdown"
    );
    assert!(tree.sink.degraded().is_empty());
}

#[tokio::test(start_paused = true)]
async fn stopping_the_tree_drains_the_work_a_writer_already_accepted() {
    let mut tree = Tree::start(settings(5)).await;
    tree.add(writer(1));
    let busy_writer = tree.running(writer(1)).await;
    for n in 0..50 {
        send(&busy_writer, TestChildMsg::Work(n));
    }

    mcss::actors::stop(&tree.supervisor, &mut tree.handle, Duration::from_secs(10))
        .await
        .expect("the tree stops within the deadline");

    assert_eq!(tree.log.work(writer(1)), (0..50).collect::<Vec<_>>());
    assert_eq!(tree.log.graceful_stops(), vec![writer(1)]);
    assert!(tree.handle.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_plain_stop_of_the_supervisor_still_stops_its_children_gracefully() {
    let mut tree = Tree::start(settings(5)).await;
    tree.add(calendar(1));
    tree.add(writer(1));
    tree.running(calendar(1)).await;
    tree.running(writer(1)).await;

    tree.supervisor.stop(None);
    tokio::time::timeout(Duration::from_secs(5), &mut tree.handle)
        .await
        .expect("the supervisor stops")
        .expect("its task completes");

    let mut stopped = tree.log.graceful_stops();
    stopped.sort();
    assert_eq!(stopped, vec![calendar(1), writer(1)]);
}

/// Real time here: the SQLite pool's own timeouts must not see a paused clock jump.
#[tokio::test]
async fn a_degraded_child_marks_its_account_degraded_in_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("mcss.db").display());
    let app_settings =
        Settings::from_vars([("DATABASE_URL".to_owned(), url)]).expect("test settings are valid");
    let store = Store::connect(&app_settings)
        .await
        .expect("connect to SQLite");
    store.migrate().await.expect("migrate SQLite");
    let account = store
        .create_account(NewAccount {
            group: mcss::store::DEFAULT_GROUP.to_owned(),
            rules: mcss::store::CalendarRules::default(),
            alias: "Calendar 01".to_owned(),
            email: Some("one@example.com".to_owned()),
            calendar_id: CalendarId::parse("one@example.com").expect("valid calendar id"),
            refresh_token: SecretString::from("1//refresh".to_owned()),
            time_zone: None,
        })
        .await
        .expect("create account")
        .id;
    let sink = Arc::new(StoreDegradedSink {
        store: store.clone(),
    });
    let tree = Tree::start_with_sink(settings(0), Some(sink)).await;
    tree.add(ChildKey::Calendar(account));
    let child = tree.running(ChildKey::Calendar(account)).await;

    send(&child, TestChildMsg::Fail);

    let stored = eventually("the account is degraded in the store", || async {
        let stored = store.account(account).await.expect("account exists");
        (stored.status == AccountStatus::Degraded).then_some(stored)
    })
    .await;
    let reason = stored.status_reason.unwrap_or_default();
    assert!(
        reason.contains("calendar") && reason.contains("boom"),
        "{reason}"
    );
}
