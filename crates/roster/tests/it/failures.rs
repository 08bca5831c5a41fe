//! Failure semantics (issue 3, item 4): Kafka unreachable at startup and while running, a missing
//! topic, projector restarts and a projector SIGKILLed mid-batch, after which the read model must
//! equal a replay from scratch. Each test owns its servers; the Kafka-only ones return early (with
//! a note) on the other backends.
//!
//! Not covered here: Postgres unreachable while the projector runs (the suite shares one Postgres
//! server, which a test cannot stop).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::util::Timeout;
use serde_json::json;

use crate::harness::scim::{id_of, patch_op};
use crate::harness::{
    Backend, KafkaTopic, Req, Role, Scim, Server, Spec, StartOptions, TestDb, TestDir, Topology, USER_SCHEMA, backend,
    create_user_eventually, member_ids, poll, run_roster, run_roster_with, uid,
};

fn kafka_only(test: &str) -> bool {
    if backend() == Backend::Kafka {
        return true;
    }
    eprintln!("{test}: skipped on the {:?} backend (needs ROSTER_IT_BACKEND=kafka)", backend());
    false
}

/// The topology these tests use for "the projector": the whole `serve` process on SQLite (one
/// process is all SQLite supports well), else separate processes.
fn split_or_serve(ingress: usize, projectors: usize) -> Topology {
    match backend() {
        Backend::Sqlite => Topology::Serve,
        Backend::Postgres | Backend::Kafka => Topology::Split { ingress, projectors, licensing: 0 },
    }
}

#[test]
fn processes_exit_non_zero_naming_kafka_when_the_brokers_are_unreachable() {
    let dir = TestDir::new("nokafka");
    let db = TestDb::fresh(&dir, "roster.db");
    // The schema first: processes started at once on an empty database race to migrate it.
    let out = run_roster(&["migrate", "--database-url", &db.url], Duration::from_secs(60));
    assert!(out.status.success(), "roster migrate without Kafka failed:\n{}\n{}", out.stdout, out.stderr);
    let env = [
        ("ROSTER_DATABASE_URL", db.url.as_str()),
        ("ROSTER_KAFKA_BROKERS", "127.0.0.1:1"),
        ("ROSTER_KAFKA_TOPIC", "roster-it-unreachable"),
        ("ROSTER_ADMIN_TOKEN", "unused"),
        ("ROSTER_LISTEN", "127.0.0.1:0"),
        ("ROSTER_OPS_LISTEN", "127.0.0.1:0"),
    ];
    // All four at once: each waits for the metadata time-out.
    let runners: Vec<_> = ["migrate", "ingress", "projector", "serve"]
        .into_iter()
        .map(|cmd| {
            let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            thread::spawn(move || {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let started = Instant::now();
                (cmd, run_roster_with(&[cmd], &env, Duration::from_secs(90)), started.elapsed())
            })
        })
        .collect();
    let outputs: Vec<_> =
        runners.into_iter().map(|h| h.join().unwrap_or_else(|_| panic!("runner thread panicked"))).collect();
    for (cmd, out, took) in outputs {
        let all = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
        assert!(!out.status.success(), "roster {cmd} must fail without Kafka ({}), took {took:?}:\n{all}", out.status);
        assert!(!out.stdout.contains("roster: ready"), "roster {cmd} must not report ready without Kafka:\n{all}");
        assert!(
            out.stderr.contains("Kafka") && out.stderr.contains("127.0.0.1:1"),
            "roster {cmd}: the error must name Kafka and the brokers:\n{all}"
        );
        eprintln!("roster {cmd} without Kafka: exit {} after {took:?}", out.status);
    }
}

#[test]
fn restarted_projector_applies_the_next_write_without_waiting_for_more_events() {
    // One ingress and one projector: after a graceful projector restart, the very next write
    // must be applied promptly, not only once a later event arrives in its partition.
    let mut spec = Spec::fresh();
    spec.topology = split_or_serve(1, 1);
    let mut srv = Server::launch(spec);
    let scim = srv.tenant();
    let first = scim.user_id(&format!("before-{}@restart.test", uid()));
    let public = srv.startup.public_addr.clone();
    match srv.spec().topology {
        Topology::Serve => srv.restart(StartOptions { listen: public, ops_listen: "127.0.0.1:0".into() }),
        Topology::Split { .. } => {
            srv.stop_member(Role::Projector, 0);
            srv.restart_member(Role::Projector, 0);
        }
    }
    let scim = srv.scim(&scim.account_id, &scim.token);
    for i in 0..3 {
        let started = Instant::now();
        let name = format!("after-{i}-{}@restart.test", uid());
        let r = scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": name}));
        assert_eq!(
            r.status,
            201,
            "write {i} after the projector restart took {:?}:\n{}\nserver logs:\n{}",
            started.elapsed(),
            r.describe(),
            srv.logs()
        );
    }
    scim.get_user(&first);
    assert_eq!(scim.list_all("/Users").len(), 4);
}

#[test]
fn writes_answer_503_while_kafka_is_down_reads_keep_working_and_recovery_is_automatic() {
    if !kafka_only("writes_answer_503_while_kafka_is_down") {
        return;
    }
    // Recovery is checked up to Kafka: a write after the outage reaches the topic. How long the
    // projector then takes to apply it is the strict variant's business (a known issue).
    kafka_outage(None);
}

#[test]
fn writes_are_applied_within_seconds_after_kafka_comes_back() {
    if !kafka_only("writes_are_applied_within_seconds_after_kafka_comes_back") {
        return;
    }
    // Typically 2–3 s; under the whole suite on 2 cores the consumer has taken more than 20 s.
    kafka_outage(Some(Duration::from_secs(45)));
}

/// How many records the topic holds (sum of its partitions' high watermarks).
fn topic_size(brokers: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("roster-it-probe-{}", uid()))
        .set("log_level", "3")
        .create()
        .unwrap_or_else(|e| panic!("creating a probe consumer: {e}"));
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Timeout::After(Duration::from_secs(10)))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"))
                .1
        })
        .sum()
}

/// Takes librdkafka's mock cluster down under an ingress and a projector, checks what clients
/// see, and brings it back: `/readyz` and appends must recover by themselves, and with
/// `applied_within`, writes must be applied again within that time.
fn kafka_outage(applied_within: Option<Duration>) {
    // The mock cluster, in this test process, is the only broker we may take down: the real one
    // is shared by the whole suite. The roster processes reach it over TCP.
    let mock = MockCluster::new(1).unwrap_or_else(|e| panic!("starting librdkafka's mock cluster: {e}"));
    let topic = format!("roster-it-mock-{}", uid());
    mock.create_topic(&topic, 4, 1).unwrap_or_else(|e| panic!("creating {topic} on the mock cluster: {e}"));
    let brokers = mock.bootstrap_servers();
    let spec = Spec {
        dir: Arc::new(TestDir::new("mock")),
        db: Arc::new(TestDb::postgres()),
        admin_token: format!("admin-{}", uid()),
        kafka: Some(Arc::new(KafkaTopic::external(&brokers, &topic, 4))),
        group: format!("roster-it-mock-{}", uid()),
        topology: Topology::Split { ingress: 1, projectors: 1, licensing: 0 },
        env: Vec::new(),
    };
    let srv = Server::launch(spec);
    let scim = srv.tenant();
    let before = create_user_eventually(&scim, "before-outage@mock.test");
    let ready = |ops: &str| Req::new("GET", format!("{ops}/readyz")).send(scim.agent()).status;
    let projector_ops = srv.ops_of(Role::Projector, 0);
    assert_eq!(ready(&srv.ops), 200);
    assert_eq!(ready(&projector_ops), 200);

    mock.broker_down(-1).unwrap_or_else(|e| panic!("taking the mock broker down: {e}"));
    let started = Instant::now();
    let r = scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "during-outage@mock.test"}));
    let took = started.elapsed();
    r.scim_error(503, None);
    assert!(r.header("retry-after").is_some(), "503 must carry Retry-After:\n{}", r.describe());
    assert!(took < Duration::from_secs(25), "the write must fail within the produce time-out, took {took:?}");
    // Reads keep working.
    assert_eq!(scim.get_user(&id_of(&before))["userName"], "before-outage@mock.test");
    assert_eq!(scim.filter_users("userName eq \"before-outage@mock.test\"").len(), 1);
    for ops in [&srv.ops, &projector_ops] {
        let not_ready = poll(Duration::from_secs(20), || (ready(ops) == 503).then_some(()));
        assert!(not_ready.is_some(), "{ops}/readyz must report not ready while Kafka is down");
    }

    mock.broker_up(-1).unwrap_or_else(|e| panic!("bringing the mock broker up: {e}"));
    let up = Instant::now();
    for ops in [&srv.ops, &projector_ops] {
        // Generous under a loaded CI machine; typically a second or two.
        let back = poll(Duration::from_secs(60), || (ready(ops) == 200).then_some(()));
        assert!(back.is_some(), "{ops}/readyz must recover by itself:\n{}", srv.logs());
    }
    // Nothing of the failed write reached Kafka: only the first user's event is in the topic.
    assert_eq!(topic_size(&brokers, &topic, 4), 1, "the write that answered 503 must not be in the topic");
    // The client retries the failed write; appends work again by themselves.
    let r = scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "during-outage@mock.test"}));
    assert!(r.status == 201 || r.status == 503, "retry after the outage:\n{}", r.describe());
    assert_eq!(topic_size(&brokers, &topic, 4), 2, "the retried write must reach Kafka:\n{}", r.describe());
    if let Some(within) = applied_within {
        let applied = poll(within.saturating_sub(up.elapsed()), || {
            scim.filter_users("userName eq \"during-outage@mock.test\"").pop()
        });
        assert!(
            applied.is_some(),
            "the retried write was not applied within {within:?} of Kafka's return:\n{}",
            srv.logs()
        );
        eprintln!("kafka outage: writes applied again {:?} after the broker came back", up.elapsed());
        create_user_eventually(&scim, "after-outage@mock.test");
        assert_eq!(scim.list_all("/Users").len(), 3);
    }
    drop(srv);
    drop(mock);
}

#[test]
fn writes_answer_503_while_the_topic_is_missing_and_succeed_once_migrate_recreates_it() {
    if !kafka_only("writes_answer_503_while_the_topic_is_missing") {
        return;
    }
    let mut spec = Spec::fresh();
    spec.topology = Topology::Split { ingress: 1, projectors: 1, licensing: 0 };
    let srv = Server::launch(spec);
    let scim = srv.tenant();
    let before = scim.user_id("before@topic.test");
    let topic = srv.kafka().unwrap_or_else(|| panic!("no topic")).clone();
    topic.delete_topic();
    let gone = poll(Duration::from_secs(30), || (!topic.exists()).then_some(()));
    assert!(gone.is_some(), "topic {} still listed after deletion", topic.topic);

    let started = Instant::now();
    let r = scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "missing-topic@topic.test"}));
    let took = started.elapsed();
    eprintln!("write with the topic deleted: {} after {took:?}", r.status);
    r.scim_error(503, None);
    assert!(r.header("retry-after").is_some(), "503 must carry Retry-After:\n{}", r.describe());
    assert!(took < Duration::from_secs(25), "the write must fail within the produce time-out, took {took:?}");
    assert_eq!(scim.get_user(&before)["userName"], "before@topic.test", "reads keep working");
    let readyz = Req::new("GET", format!("{}/readyz", srv.ops)).send(scim.agent());
    readyz.assert_status(503);

    srv.spec().migrate();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r =
            scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": format!("after-{}@topic.test", uid())}));
        match r.status {
            201 => break,
            503 if Instant::now() < deadline => thread::sleep(Duration::from_millis(500)),
            _ => panic!("writes did not recover after the topic was recreated:\n{}\n{}", r.describe(), srv.logs()),
        }
    }
    Req::new("GET", format!("{}/readyz", srv.ops)).send(scim.agent()).assert_status(200);
}

#[test]
fn a_write_acknowledged_as_durable_after_the_topic_was_recreated_is_applied() {
    if !kafka_only("a_write_acknowledged_as_durable_after_the_topic_was_recreated_is_applied") {
        return;
    }
    let mut spec = Spec::fresh();
    spec.topology = Topology::Split { ingress: 1, projectors: 1, licensing: 0 };
    let srv = Server::launch(spec);
    let scim = srv.tenant();
    for i in 0..3 {
        scim.user_id(&format!("before-{i}@recreate.test"));
    }
    let topic = srv.kafka().unwrap_or_else(|| panic!("no topic")).clone();
    topic.delete_topic();
    assert!(poll(Duration::from_secs(30), || (!topic.exists()).then_some(())).is_some(), "topic still listed");
    srv.spec().migrate();
    let ready = poll(Duration::from_secs(30), || {
        (Req::new("GET", format!("{}/readyz", srv.ops)).send(scim.agent()).status == 200).then_some(())
    });
    assert!(ready.is_some(), "/readyz never recovered after the topic was recreated");
    // Each write lands in the new topic (Kafka acknowledged it); a 503 now means "durable, will be
    // applied exactly once", so every one of them must show up.
    for i in 0..4 {
        create_user_eventually(&scim, &format!("after-{i}@recreate.test"));
    }
}

/// What the writers of [`projector_killed_mid_batch_leaves_a_read_model_equal_to_a_replay_from_scratch`]
/// saw acknowledged.
#[derive(Default)]
struct Tally {
    /// (tenant, userName, id) of every 201.
    created: Vec<(usize, String, String)>,
    /// Last acknowledged title per user id; `None` once a later title change was not acknowledged.
    titles: BTreeMap<String, Option<String>>,
    /// (tenant, user id) of every acknowledged member add.
    members: Vec<(usize, String)>,
    /// Writes answered 503 or cut off by the kill.
    unacked: usize,
    /// Writes started.
    attempts: usize,
    /// Any other answer: a failure.
    errors: Vec<String>,
}

fn writer(w: usize, tenants: Vec<(Scim, String)>, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let mut mine: Vec<(usize, String)> = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let t = (w + i) % tenants.len();
        let (scim, group) = &tenants[t];
        i += 1;
        tally.lock().unwrap_or_else(|p| p.into_inner()).attempts += 1;
        let own: Vec<&String> = mine.iter().filter(|(tt, _)| *tt == t).map(|(_, id)| id).collect();
        let result = match (i % 4, own.last()) {
            (1, Some(id)) => {
                let title = format!("t{w}-{i}");
                let id = (*id).clone();
                let req = scim.req(
                    "PATCH",
                    &format!("/Users/{id}"),
                    Some(&patch_op(json!([{"op": "Replace", "path": "title", "value": title}]))),
                );
                req.try_send(scim.agent()).map(|r| (r, Some((id, title)), None))
            }
            (3, Some(id)) => {
                let id = (*id).clone();
                let req = scim.req(
                    "PATCH",
                    &format!("/Groups/{group}"),
                    Some(&patch_op(json!([{"op": "Add", "path": "members", "value": [{"value": id}]}]))),
                );
                req.try_send(scim.agent()).map(|r| (r, None, Some(id)))
            }
            _ => {
                let name = format!("w{w}-{i}-{}@kill.test", &uid()[..6]);
                let body = json!({"schemas": [USER_SCHEMA], "userName": name, "active": true});
                scim.req("POST", "/Users", Some(&body)).try_send(scim.agent()).map(|r| (r, None, None))
            }
        };
        let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok((r, title, member)) => match (r.status, title, member) {
                (201, _, _) => {
                    let u = r.json();
                    let (name, id) = (u["userName"].as_str().unwrap_or_default(), id_of(&u));
                    tally.created.push((t, name.to_owned(), id.clone()));
                    mine.push((t, id));
                }
                (200, Some((id, title)), _) => {
                    tally.titles.insert(id, Some(title));
                }
                (204, _, Some(id)) => tally.members.push((t, id)),
                (503, title, _) => {
                    tally.unacked += 1;
                    if let Some((id, _)) = title {
                        tally.titles.insert(id, None);
                    }
                }
                _ => tally.errors.push(r.describe()),
            },
            Err(_) => {
                // The process we talked to was killed: the write may or may not have happened.
                tally.unacked += 1;
                drop(tally);
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Every user and group of an account, by id, as JSON text with the server origin normalised.
fn snapshot(scim: &Scim, origin: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for path in ["/Users", "/Groups"] {
        for r in scim.list_all(path) {
            out.insert(format!("{path}/{}", id_of(&r)), r.to_string().replace(origin, "{origin}"));
        }
    }
    out
}

#[test]
fn projector_killed_mid_batch_leaves_a_read_model_equal_to_a_replay_from_scratch() {
    // SQLite: the `serve` process is the projector. Postgres: one ingress and one projector on
    // the embedded log. Kafka: two ingress and two projector replicas; one projector is killed.
    let mut spec = Spec::fresh();
    spec.topology = split_or_serve(2, 2);
    let mut srv = Server::launch(spec);
    let tenants: Vec<(Scim, String)> = (0..6)
        .map(|_| {
            let scim = srv.tenant();
            let group = id_of(&scim.create_group(&format!("kill-{}", uid())));
            (scim, group)
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (t, s, y) = (tenants.clone(), stop.clone(), tally.clone());
            thread::spawn(move || writer(w, t, s, y))
        })
        .collect();

    let count = |f: fn(&Tally) -> usize| f(&tally.lock().unwrap_or_else(|p| p.into_inner()));
    let acked = || count(|t| t.created.len());
    let loaded = poll(Duration::from_secs(30), || (acked() >= 40).then_some(()));
    assert!(loaded.is_some(), "the load never got going:\n{}", srv.logs());
    let public = srv.startup.public_addr.clone();
    let at_kill = acked();
    match srv.spec().topology {
        Topology::Serve => {
            let unacked = count(|t| t.unacked);
            srv.kill_hard();
            // Restart once the writers have run into the dead server.
            poll(Duration::from_secs(10), || (count(|t| t.unacked) > unacked).then_some(()));
            srv.restart(StartOptions { listen: public, ops_listen: "127.0.0.1:0".into() });
        }
        Topology::Split { .. } => {
            let attempts = count(|t| t.attempts);
            srv.kill_member(Role::Projector, 0);
            // Keep the load going while the projector is dead, then restart it.
            poll(Duration::from_secs(30), || (count(|t| t.attempts) >= attempts + 12).then_some(()));
            srv.restart_member(Role::Projector, 0);
        }
    }
    // Keep writing after the restart until a few more writes were acknowledged.
    let resumed = poll(Duration::from_secs(60), || (acked() >= at_kill + 20).then_some(()));
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap_or_else(|_| panic!("writer panicked"));
    }
    assert!(resumed.is_some(), "writes did not resume after the projector restart:\n{}", srv.logs());
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    assert!(tally.errors.is_empty(), "unexpected answers under load:\n{}", tally.errors.join("\n"));

    // A last write per account: once it is visible, every earlier event of the account (its
    // partition, on Kafka) has been applied.
    let tenants: Vec<(Scim, String)> =
        tenants.into_iter().map(|(s, g)| (srv.scim(&s.account_id, &s.token), g)).collect();
    for (scim, _) in &tenants {
        create_user_eventually(scim, &format!("sentinel-{}@kill.test", uid()));
    }
    // Every acknowledged write is there, exactly once.
    for (t, name, id) in &tally.created {
        let r = tenants[*t].0.get(&format!("/Users/{id}"));
        assert_eq!(r.status, 200, "acknowledged user {name} lost:\n{}", r.describe());
        assert_eq!(r.json()["userName"], name.as_str());
    }
    for (id, title) in &tally.titles {
        if let Some(title) = title {
            let t = tally.created.iter().find(|(_, _, i)| i == id).map(|(t, _, _)| *t).unwrap_or_default();
            assert_eq!(tenants[t].0.get_user(id)["title"], title.as_str(), "acknowledged title of {id} lost");
        }
    }
    for (t, (scim, group)) in tenants.iter().enumerate() {
        let members = member_ids(&scim.get_group(group));
        let want: BTreeSet<String> =
            tally.members.iter().filter(|(tt, _)| *tt == t).map(|(_, id)| id.clone()).collect();
        assert!(want.is_subset(&members), "acknowledged member adds lost in group {group}");
        let names: Vec<String> =
            scim.list_all("/Users").iter().map(|u| u["userName"].as_str().unwrap_or_default().to_owned()).collect();
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "duplicate users in account {t}");
    }
    let live: Vec<BTreeMap<String, String>> = tenants.iter().map(|(s, _)| snapshot(s, &srv.public)).collect();

    // Replay the whole log into a fresh database and serve it: the same read model.
    srv.stop();
    let fresh = TestDb::fresh(&srv.dir(), "replayed.db");
    let mut args = vec!["replay", "--database-url", &srv.db_url, "--into", &fresh.url];
    if let Some(k) = srv.kafka() {
        args.extend(["--kafka-brokers", &k.brokers, "--kafka-topic", &k.topic]);
    }
    let out = run_roster(&args, Duration::from_secs(300));
    assert!(out.status.success(), "roster replay failed ({}):\n{}\n{}", out.status, out.stdout, out.stderr);
    let mut replayed_spec = srv.spec().with_db(fresh);
    replayed_spec.topology = split_or_serve(1, 1);
    let replayed = Server::launch(replayed_spec);
    let mut diffs = Vec::new();
    for ((scim, _), before) in tenants.iter().zip(&live) {
        let after = snapshot(&replayed.scim(&scim.account_id, &scim.token), &replayed.public);
        let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for k in keys {
            if before.get(k) != after.get(k) {
                diffs.push(format!("{k}\n  live:     {:?}\n  replayed: {:?}", before.get(k), after.get(k)));
            }
        }
    }
    assert!(diffs.is_empty(), "the read model differs from a replay from scratch:\n{}", diffs.join("\n"));
    let total: usize = live.iter().map(BTreeMap::len).sum();
    eprintln!(
        "projector kill ({:?}): {} creates, {} title changes, {} member adds acknowledged, {} unacknowledged; \
         {total} resources equal after replay ({})",
        backend(),
        tally.created.len(),
        tally.titles.len(),
        tally.members.len(),
        tally.unacked,
        out.stdout.trim()
    );
}
