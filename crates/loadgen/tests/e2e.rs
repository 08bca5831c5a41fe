//! End to end: starts a real `roster serve` (a debug build found in the cargo target directory) on free ports with
//! a fresh SQLite database, runs the full scenario with the `roster-loadgen` binary, and checks the report.

// Tests fail by panicking; unwrap/expect are the idiom here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `roster` binary: `$CARGO_TARGET_DIR/{debug,release}/roster`, else `<workspace>/target/…`.
fn roster_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    ["debug", "release"].iter().map(|p| target.join(p).join("roster")).find(|p| p.is_file())
}

/// A running server, killed on drop.
struct Server {
    child: Child,
    public: String,
    ops: String,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throw-away directory, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(bin: &PathBuf) -> Server {
    let dir =
        std::env::temp_dir().join(format!("lg-e2e-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}/roster.db?mode=rwc", dir.display());
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0", "--database-url", &db])
        .env("ROSTER_ADMIN_TOKEN", "adm")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut public, mut ops) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line =
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("roster did not get ready");
        if let Some(a) = line.strip_prefix("roster: public listening on ") {
            public = Some(format!("http://{}", a.trim()));
        } else if let Some(a) = line.strip_prefix("roster: ops listening on ") {
            ops = Some(format!("http://{}", a.trim()));
        } else if line.trim() == "roster: ready" {
            break;
        }
    }
    Server { child, public: public.unwrap(), ops: ops.unwrap(), _dir: TempDir(dir) }
}

#[test]
fn full_scenario_against_a_real_roster_passes_the_correctness_check() {
    let Some(bin) = roster_binary() else {
        eprintln!("SKIPPED: no roster binary in $CARGO_TARGET_DIR/debug (build it with `cargo build -p roster`)");
        return;
    };
    let server = start(&bin);
    let report = std::env::temp_dir().join(format!("lg-e2e-report-{}.json", std::process::id()));
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_roster-loadgen"))
        .args(["run", "--admin-url", &server.ops, "--admin-token", "adm", "--public-url", &server.public])
        .args(["--accounts", "2", "--users", "50", "--groups", "5", "--memberships-per-user", "2"])
        .args(["--concurrency", "4", "--member-batch", "7", "--incremental-cycles", "2", "--seed", "7"])
        .args(["--server-pid", &server.child.id().to_string(), "--no-progress", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed ({:?}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("correctness: PASSED"), "{stdout}");
    eprintln!("{stdout}\n(took {:?})", t.elapsed());

    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let _ = std::fs::remove_file(&report);
    assert_eq!(r["scenario"], "full");
    assert_eq!(r["correctness"]["passed"], true);
    assert_eq!(r["correctness"]["mismatch_count"], 0);
    assert_eq!(r["accounts"].as_array().map(Vec::len), Some(2));
    assert!(r["config"].get("admin_token").is_none(), "the admin token must not be in the report");
    // 100 users created, then ~1% deleted per cycle.
    let users = r["correctness"]["users_expected"].as_u64().unwrap();
    assert!((90..100).contains(&users), "{users}");
    assert_eq!(r["correctness"]["users_found"].as_u64(), Some(users));
    assert_eq!(r["correctness"]["groups_expected"], 10);
    assert!(r["correctness"]["memberships_expected"].as_u64().unwrap() > 150);
    assert!(r["requests"].as_u64().unwrap() > 300);
    assert!(r["rps"].as_f64().unwrap() > 0.0);
    assert_eq!(r["errors"], 0, "errors: {}", r["error_examples"]);
    for kind in [
        "user-lookup",
        "user-create",
        "group-lookup",
        "group-create",
        "member-add",
        "member-remove",
        "user-patch",
        "user-deactivate",
        "user-reactivate",
        "group-rename",
        "user-delete",
    ] {
        let k = &r["kinds"][kind];
        assert!(k["count"].as_u64().unwrap_or(0) > 0, "no {kind} requests: {}", r["kinds"]);
        for f in ["p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "rps"] {
            assert!(k[f].is_number(), "{kind}.{f} missing");
        }
        assert!(k["p50_ms"].as_f64() <= k["p99_ms"].as_f64() && k["p99_ms"].as_f64() <= k["max_ms"].as_f64());
    }
    let phases: Vec<&str> = r["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(phases, ["setup", "users", "groups", "memberships", "incremental", "check"]);
    assert!(r["convergence"]["last_write_to_check_pass_secs"].as_f64().unwrap() >= 0.0);
    assert!(r["convergence"]["check_secs"].is_number());
    assert!(r["errors_by_status"].is_object());
    assert!(r["resources"]["server_cpu_secs"].is_number());
}

#[test]
fn relicense_scenario_times_the_first_policy_and_the_change_until_every_member_holds_the_new_license() {
    let Some(bin) = roster_binary() else {
        eprintln!("SKIPPED: no roster binary in $CARGO_TARGET_DIR/debug (build it with `cargo build -p roster`)");
        return;
    };
    let server = start(&bin);
    let report = std::env::temp_dir().join(format!("lg-e2e-relicense-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_roster-loadgen"))
        .args(["run", "--admin-url", &server.ops, "--admin-token", "adm", "--public-url", &server.public])
        .args(["--scenario", "relicense", "--accounts", "1", "--users", "120", "--member-batch", "50"])
        .args(["--concurrency", "4", "--relicense-timeout-secs", "60", "--no-progress", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let _ = std::fs::remove_file(&report);
    assert_eq!(r["scenario"], "relicense");
    assert_eq!(r["correctness"]["passed"], true);
    assert_eq!(r["correctness"]["memberships_expected"], 120);
    let result = &r["relicense"][0];
    assert_eq!(result["members"], 120);
    let counts = &r["kinds"]["license-count"];
    assert!(counts["count"].as_u64().unwrap() >= 4, "two license counts per poll, at least a poll per step: {counts}");
    assert_eq!(counts["errors"], 0, "{}", r["error_examples"]);
    let steps = result["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["first-policy", "policy-change"]);
    for (step, license, other) in [(&steps[0], "standard", "premium"), (&steps[1], "premium", "standard")] {
        let decided = step["decided_secs"].as_f64().unwrap_or_else(|| panic!("never decided: {step}"));
        assert!(decided >= step["put_secs"].as_f64().unwrap(), "{step}");
        assert!(step["polls"].as_u64().unwrap() >= 1);
        assert_eq!(step["seats"][license], 120, "{step}");
        assert_eq!(step["seats"][other], 0, "{step}");
    }
}
