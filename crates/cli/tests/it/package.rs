//! The Debian package: `scripts/package` builds it from the binaries under test, `dpkg`
//! installs it (files, the token and state directory its scripts make), `systemd-analyze`
//! verifies its unit, and the installed engine and CLI run a clone's whole life under exactly
//! the unit's capability bounding set and `NoNewPrivileges` (through `setpriv`, which applies
//! them as systemd would); then `dpkg --purge` removes it. systemd is not PID 1 on these
//! machines, so the unit is verified and its settings applied, but systemd does not start it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use exec::Cmd;
use test_support::TestDir;

use crate::clone::run_in_clone;
use crate::support::{PASSWORD, TestServer, scion_bin, server_bin};

const UNIT: &str = "/lib/systemd/system/scion-server.service";

/// Runs a command to success; its stdout.
async fn run(program: impl AsRef<Path>, args: &[&str]) -> String {
    let program = program.as_ref();
    let output = Cmd::new(program)
        .args(args.iter().copied())
        .output_any_status()
        .await
        .expect("run the command");
    assert!(
        output.status.success(),
        "{} {args:?}: {:?}\n{}\n{}",
        program.display(),
        output.status,
        output.stdout_text(),
        output.stderr_text()
    );
    output.stdout_text()
}

/// Purges the package when dropped, also when the test fails.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        #[allow(clippy::disallowed_methods, reason = "cleanup in Drop cannot await")]
        let _ = std::process::Command::new("dpkg").args(["--purge", "scion"]).output();
    }
}

/// The unit's `Key=value` for `key`.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in the unit:\n{unit}"))
}

/// A capability's bit, as `/proc/<pid>/status` counts them.
fn capability_bit(name: &str) -> u32 {
    match name {
        "CAP_CHOWN" => 0,
        "CAP_DAC_OVERRIDE" => 1,
        "CAP_DAC_READ_SEARCH" => 2,
        "CAP_FOWNER" => 3,
        "CAP_KILL" => 5,
        "CAP_SETGID" => 6,
        "CAP_SETUID" => 7,
        "CAP_SETPCAP" => 8,
        "CAP_SYS_ADMIN" => 21,
        "CAP_SYS_PTRACE" => 19,
        other => panic!("the test does not know {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debian_package_installs_and_runs_clones_with_only_its_units_capabilities() {
    assert!(
        !Path::new("/etc/scion").exists() && !Path::new("/usr/bin/scion-server").exists(),
        "Scion is installed on this machine already; this test installs and purges its package"
    );
    let dir = TestDir::new("scion-package-");
    let server = server_bin().await;
    let bin_dir = Path::new(scion_bin()).parent().expect("a binary in a directory");
    assert_eq!(
        server.parent().expect("a binary in a directory"),
        bin_dir,
        "scion and scion-server from one build"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/package");
    let out = dir.path().join("out");
    let printed = run(
        &script,
        &[
            "--bin-dir",
            bin_dir.to_str().expect("a UTF-8 path"),
            "--out",
            out.to_str().expect("a UTF-8 path"),
        ],
    )
    .await;
    let deb = PathBuf::from(printed.lines().last().expect("the package path printed last"));
    assert!(deb.starts_with(&out) && deb.exists(), "{printed}");

    let contents = run("dpkg-deb", &["--contents", deb.to_str().expect("a UTF-8 path")]).await;
    for file in [
        "./usr/bin/scion",
        "./usr/bin/scion-server",
        "./lib/systemd/system/scion-server.service",
        "./etc/scion/scion.toml",
        "./usr/share/man/man1/scion.1.gz",
        "./usr/share/man/man1/scion-server.1.gz",
        "./usr/share/doc/scion/example.toml",
    ] {
        assert!(contents.contains(&format!(" {file}\n")), "{file} missing:\n{contents}");
    }
    let conffiles =
        run("dpkg-deb", &["--info", deb.to_str().expect("a UTF-8 path"), "conffiles"]).await;
    assert_eq!(conffiles.trim(), "/etc/scion/scion.toml");

    let _installed = Installed;
    run("dpkg", &["--install", deb.to_str().expect("a UTF-8 path")]).await;
    let status = run("dpkg-query", &["--show", "--showformat=${Status}", "scion"]).await;
    assert_eq!(status, "install ok installed");
    let token = std::fs::metadata("/etc/scion/token").expect("read an installed file");
    assert_eq!(token.permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string("/etc/scion/token").expect("read an installed file").trim().len()
            >= 32
    );
    assert_eq!(
        std::fs::metadata("/var/lib/scion").expect("read an installed file").permissions().mode()
            & 0o777,
        0o700
    );
    // The installed configuration is one the installed engine accepts as it is.
    let checked = Cmd::new("/usr/bin/scion-server")
        .args(["--config", "/etc/scion/scion.toml", "--check-config"])
        .env("NO_COLOR", "1")
        .output_any_status()
        .await
        .expect("package test step");
    let report = checked.stderr_text();
    assert!(checked.status.success(), "{report}");
    for part in ["configuration is valid", "state_dir=/var/lib/scion", "token=true"] {
        assert!(report.contains(part), "{part} missing: {report}");
    }
    run("systemd-analyze", &["verify", "--man=no", UNIT]).await;

    // The engine as the unit starts it: its binary, under the unit's bounding set and
    // NoNewPrivileges, makes its pool, serves a clone, resets and destroys it.
    let unit = std::fs::read_to_string(UNIT).expect("read an installed file");
    assert!(
        unit_value(&unit, "ExecStart").starts_with("/usr/bin/scion-server --config "),
        "{unit}"
    );
    assert_eq!(unit_value(&unit, "NoNewPrivileges"), "yes");
    let capabilities: Vec<&str> = unit_value(&unit, "CapabilityBoundingSet").split(' ').collect();
    let bounding = std::iter::once("-all".to_owned())
        .chain(
            capabilities
                .iter()
                .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_lowercase())),
        )
        .collect::<Vec<_>>()
        .join(",");
    let expected: u64 = capabilities.iter().map(|cap| 1u64 << capability_bit(cap)).sum();
    let own = std::fs::read_to_string("/proc/self/status").expect("read /proc");
    let own = own.lines().find_map(|line| line.strip_prefix("CapBnd:")).expect("a CapBnd line");
    let own = u64::from_str_radix(own.trim(), 16).expect("a hexadecimal mask");
    assert_eq!(own & expected, expected, "this test runs without some of the unit's capabilities");
    let bounding_arg = format!("--bounding-set={bounding}");
    let launcher = ["setpriv", bounding_arg.as_str(), "--no-new-privs", "--"];
    let server = TestServer::start_through(&launcher, Path::new("/usr/bin/scion-server"), "").await;
    let proc_status =
        std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("read /proc");
    let bound =
        proc_status.lines().find_map(|line| line.strip_prefix("CapBnd:")).expect("read /proc");
    assert_eq!(
        u64::from_str_radix(bound.trim(), 16).expect("read /proc"),
        expected,
        "{proc_status}"
    );
    assert!(proc_status.contains("NoNewPrivs:\t1"), "{proc_status}");

    let mut create = Cmd::new("/usr/bin/scion").env_clear().env("PATH", "/usr/bin:/bin");
    for (key, value) in server.scion_env() {
        create = create.env(key, value);
    }
    let created = create
        .args(["clone", "create", "--id", "packaged", "--username", "ops", "--password", PASSWORD])
        .output_any_status()
        .await
        .expect("package test step");
    assert!(created.status.success(), "{}\n{}", created.stdout_text(), created.stderr_text());
    let client = server.client();
    let clone = client.clone_status("packaged").await.expect("the clone made by the installed CLI");
    run_in_clone(&clone, "CREATE TABLE from_the_package (id int)").await;
    let wait = Some(std::time::Duration::from_secs(60));
    let reset =
        client.reset_clone("packaged", &Default::default(), wait).await.expect("reset the clone");
    run_in_clone(&reset.expect("the reset clone"), "CREATE TABLE from_the_package (id int)").await;
    server.destroy_all_clones().await;
}
