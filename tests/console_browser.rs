//! The live console end to end in headless Chromium (Debian `chromium`
//! driven by `playwright-core`; `tests/peers/install.sh browser`): with a
//! running proxy and real Redis peers, the page is refused without the
//! token, shows the topics with it, its request rate moves under traffic,
//! an advance shows the refused checks with their reasons, a forced
//! advance shows the new state and the history row. The screenshot is kept
//! in `target/console.png` (a CI artifact).

#[path = "console/rig.rs"]
mod rig;
mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rig::{ConsoleRig, MIGRATION, TOKEN, Traffic, target_dir};
use support::{peers_dir, require_bin};

/// The script bounds each step at 15 s and itself at 120 s; this is the
/// last resort if node hangs anyway.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(150);

#[test]
fn console_in_chromium_refuses_shows_moves_and_forces() {
    let chromium = require_bin("chromium", "browser");
    let modules = peers_dir().join("node").join("node_modules");
    assert!(
        modules.join("playwright-core").is_dir(),
        "playwright-core is not installed: run tests/peers/install.sh browser"
    );
    let node = require_bin("node", "browser");

    // sessions in dual_write without a backfill: advancing to cutover fails
    // backfill_complete, which the dialog must show before Force.
    let rig = ConsoleRig::start("{ backfill_on_enter: false }");
    rig.ctl_ok(&["advance", MIGRATION, "sessions"]);
    rig.ctl_ok(&["advance", MIGRATION, "sessions"]);
    let _traffic = Traffic::start(rig.port);

    let screenshot = target_dir().join("console.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console/console.cjs");
    let mut child = Command::new(node)
        .arg(script)
        .env("NODE_PATH", &modules)
        .env("CHROMIUM", &chromium)
        .env("CONSOLE_URL", format!("http://{}/", rig.admin))
        .env("CONSOLE_TOKEN", TOKEN)
        .env("CONSOLE_MIGRATION", MIGRATION)
        .env("CONSOLE_SCREENSHOT", &screenshot)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = child
        .stdout
        .take()
        .map(|mut s| s.read_to_string(&mut stdout));
    let _ = child
        .stderr
        .take()
        .map(|mut s| s.read_to_string(&mut stderr));
    println!("{stdout}");
    assert!(
        status.is_some_and(|s| s.success()),
        "console.cjs failed ({status:?}) after {:?}:\n{stdout}\n{stderr}\n--- proxy log ---\n{}",
        started.elapsed(),
        rig.proxy.log_tail(30)
    );
    for step in [
        "refused without token",
        "topics visible with token",
        "shadow mismatches shown",
        "request rate moves",
        "advance refused by checks",
        "forced advance",
        "screenshot",
    ] {
        assert!(
            stdout.contains(&format!("step ok: {step}")),
            "missing step {step}:\n{stdout}"
        );
    }
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );

    // The browser's forced move is durable and recorded as the console's,
    // with the admin token that authenticated it.
    let history = rig.ctl_ok(&["history", MIGRATION, "sessions", "--json"]);
    let history: serde_json::Value = serde_json::from_str(&history).expect("history JSON");
    let last = history
        .as_array()
        .and_then(|h| h.last())
        .expect("history row");
    assert_eq!(last["to"], "cutover");
    assert_eq!(last["forced"], true);
    // The console's actions carry the admin token's name (its file).
    assert_eq!(last["actor"], "console (token admin.token)");
}
