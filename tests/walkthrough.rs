//! The demo's walkthrough, end to end: `bash load-tests/demo.sh --once` builds a simulated
//! cloud, snigate and a client in three network namespaces and checks, with kcat, simcloud's
//! own producer and consumer group, openssl and curl, that the client gets everything done
//! through snigate alone. Network namespaces need root: without it the test is skipped,
//! except under CI (env `CI` set), where it fails instead.

use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The script bounds every step itself; this only guards against a hang outside them (a
/// build that waits on cargo's lock, say). It allows for building simcloud from scratch.
const DEADLINE: Duration = Duration::from_secs(30 * 60);

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn netns_demo_walkthrough_passes() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the walkthrough needs root for network namespaces, and CI must run it as root"
        );
        eprintln!("skipping the walkthrough: it needs root (network namespaces); run `bash load-tests/demo.sh --once`");
        return;
    }

    // stdout and stderr go to one file, so the output keeps its order.
    let mut log = tempfile::tempfile().expect("temporary file");
    let mut child = Command::new("bash")
        .args(["load-tests/demo.sh", "--once"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone file handle"))
        .stderr(log.try_clone().expect("clone file handle"))
        .spawn()
        .expect("start bash load-tests/demo.sh --once");

    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the demo") {
            break Some(status);
        }
        if start.elapsed() > DEADLINE {
            // SIGTERM, not SIGKILL: the script's trap then removes its namespaces.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };

    let mut output = String::new();
    log.seek(SeekFrom::Start(0)).expect("rewind output");
    log.read_to_string(&mut output).expect("read output");
    match status {
        Some(s) if s.success() => println!("{output}"),
        Some(s) => panic!("bash load-tests/demo.sh --once failed ({s}); its output:\n{output}"),
        None => panic!(
            "bash load-tests/demo.sh --once took longer than {DEADLINE:?} and was stopped; its output:\n{output}"
        ),
    }
}
