//! The Markdown report: the machine, then one table per measurement, each with the command that
//! reproduces it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};

use crate::alternatives::Method;
use crate::cluster::{Backend, Loaded};
use crate::scion::{Burst, Density, Discards, Timed};
use crate::size_label;
use crate::stats::{self, Summary};

/// One alternative's samples.
pub(crate) struct AltResult {
    pub(crate) method: Method,
    pub(crate) major: u8,
    pub(crate) samples: Vec<f64>,
}

/// Scion's clone-ready latency on one pool, with or without a warm pool.
pub(crate) struct ScionRun {
    pub(crate) backend: Backend,
    /// The server's `warm_pool_size`.
    pub(crate) warm_pool: usize,
    pub(crate) timed: Vec<Timed>,
}

impl ScionRun {
    fn label(&self) -> String {
        match self.warm_pool {
            0 => self.backend.label().to_owned(),
            size => format!("{}, warm pool {size}", self.backend.label()),
        }
    }
}

/// Everything measured at one source size.
pub(crate) struct SizeResult {
    pub(crate) size: u64,
    pub(crate) scale: u32,
    pub(crate) loaded: Loaded,
    pub(crate) scion: Vec<ScionRun>,
    pub(crate) alternatives: Vec<AltResult>,
    pub(crate) density: Option<(Backend, Density)>,
    /// Resets and destroys, dirty against untouched, per backend.
    pub(crate) discards: Vec<(Backend, Discards)>,
    /// Bursts of concurrent creates with the warm pool, per backend.
    pub(crate) bursts: Vec<(Backend, Burst)>,
    pub(crate) notes: Vec<String>,
}

impl SizeResult {
    pub(crate) fn new(size: u64, scale: u32, loaded: Loaded) -> SizeResult {
        SizeResult {
            size,
            scale,
            loaded,
            scion: Vec::new(),
            alternatives: Vec::new(),
            density: None,
            discards: Vec::new(),
            bursts: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn scion_btrfs_median(&self) -> Option<f64> {
        self.scion
            .iter()
            .find(|run| run.backend == Backend::Btrfs && run.warm_pool == 0)
            .map(|run| Summary::of(&ready_ms(&run.timed)).median)
    }
}

fn ready_ms(timed: &[Timed]) -> Vec<f64> {
    timed.iter().map(|t| t.ready_ms).collect()
}

/// The whole run.
pub(crate) struct Report {
    dir: PathBuf,
    major: u8,
    started: DateTime<Local>,
    finished: Option<DateTime<Local>>,
    load_before: String,
    load_after: String,
    command: String,
    pub(crate) sizes: Vec<SizeResult>,
    /// Physical mode's results (`--physical`), one per size.
    pub(crate) physical: Vec<crate::physical::PhysicalResult>,
    /// The section of a mode that renders its own (`--runaway`, `--wake`).
    pub(crate) section: Option<String>,
    /// Why the run stopped early, if it did.
    pub(crate) failure: Option<String>,
}

impl Report {
    pub(crate) fn new(dir: &Path, major: u8) -> Report {
        // The binary's own paths are the script's business, not part of what is measured.
        let mut args = Vec::new();
        let mut skip_value = false;
        for arg in std::env::args().skip(1) {
            if std::mem::take(&mut skip_value) {
                continue;
            }
            if arg == "--server-bin" || arg == "--out" {
                skip_value = true;
            } else if !arg.starts_with("--server-bin=") && !arg.starts_with("--out=") {
                args.push(arg);
            }
        }
        Report {
            dir: dir.to_path_buf(),
            major,
            started: Local::now(),
            finished: None,
            load_before: stats::load_average(),
            load_after: String::new(),
            command: format!("sudo scripts/bench {}", args.join(" ")).trim_end().to_owned(),
            sizes: Vec::new(),
            physical: Vec::new(),
            section: None,
            failure: None,
        }
    }

    pub(crate) fn finish(&mut self) {
        self.finished = Some(Local::now());
        self.load_after = stats::load_average();
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        self.machine(&mut out);
        if let Some(section) = &self.section {
            out.push_str(section);
        } else if self.physical.is_empty() {
            self.latency(&mut out);
            self.alternatives(&mut out);
            self.bursts(&mut out);
            self.discards(&mut out);
            self.density(&mut out);
        } else {
            crate::physical::render(&self.physical, &mut out);
        }
        let notes: Vec<&String> =
            self.sizes.iter().flat_map(|size| &size.notes).chain(&self.failure).collect();
        if !notes.is_empty() {
            out.push_str("\nNotes from the run:\n");
            for note in notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }

    fn machine(&self, out: &mut String) {
        let (_, total_kib) = stats::memory_kib();
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("PRETTY_NAME="))
            .map(|name| name.trim_matches('"').to_owned())
            .unwrap_or_default();
        let finished = self.finished.map(|t| t.format("%H:%M").to_string()).unwrap_or_default();
        let _ = writeln!(out, "Reproduce (as root): `{}`\n", self.command);
        let _ = writeln!(
            out,
            "- Measured {}–{} (local time); load average (1, 5, 15 min) before: {}, after: {}.",
            self.started.format("%Y-%m-%d %H:%M"),
            finished,
            self.load_before,
            self.load_after
        );
        let _ = writeln!(
            out,
            "- Machine: {cpus} CPUs ({model}), {:.1} GiB memory, kernel {}, {os}.",
            total_kib as f64 / (1 << 20) as f64,
            kernel.trim()
        );
        if self.physical.is_empty() {
            let _ = writeln!(
                out,
                "- Pools: sparse image files under `{}` (btrfs loop-mounted; ZFS on zfs-fuse with the image as its file vdev); the golden copy is PostgreSQL {} filled by `pgbench -i`.",
                self.dir.display(),
                self.major
            );
        } else {
            let _ = writeln!(
                out,
                "- Physical mode: a PostgreSQL {} source primary (`fsync = off`, archiving with `cp` into a local directory) filled by `pgbench -i -I dtGvp`; each `scion-server` on a btrfs pool of its own (a sparse image file under `{}`, loop-mounted); everything on this one machine, over loopback.",
                self.major,
                self.dir.display()
            );
        }
    }

    fn latency(&self, out: &mut String) {
        out.push_str(
            "\n#### Clone-ready latency\n\nFrom `POST /clone?wait=120` to the first successful `SELECT 1` over TCP (127.0.0.1, the clone's port) as the clone's password (SCRAM) user; one untimed warm-up clone first; each clone destroyed (untimed) before the next; with a warm pool, each create waits (untimed) until the pool is full again.\n\n",
        );
        out.push_str("| pool | source (data dir / database) | clones | median | p95 | min | max | server `cloningTime` median | connects refused after OK |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for size in &self.sizes {
            for run in &size.scion {
                let ready = Summary::of(&ready_ms(&run.timed));
                let server: Vec<f64> = run.timed.iter().map(|t| t.server_ms).collect();
                let refused: u32 = run.timed.iter().map(|t| t.retries).sum();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {refused} |",
                    run.label(),
                    source_label(size),
                    ready.n,
                    ms(ready.median),
                    ms(ready.p95),
                    ms(ready.min),
                    ms(ready.max),
                    ms(Summary::of(&server).median),
                );
            }
        }
    }

    fn alternatives(&self, out: &mut String) {
        if self.sizes.iter().all(|size| size.alternatives.is_empty()) {
            return;
        }
        out.push_str(
            "\n#### The alternatives, as ratios to Scion\n\nEach from its start to the first successful `SELECT 1` over TCP as a password (SCRAM) role in the new copy, against a cleanly stopped cluster on the same btrfs pool holding the same pgbench data (PostgreSQL 15's copy loaded the same way); `CREATE DATABASE` runs over an already open admin session; every copy is dropped and a CHECKPOINT runs (both untimed) before the next run. Ratio: the alternative's median over Scion's btrfs median without a warm pool at the same size.\n\n",
        );
        out.push_str("| source | method | PostgreSQL | runs | median | max | × Scion (btrfs) |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
        for size in &self.sizes {
            let scion = size.scion_btrfs_median();
            for run in &size.scion {
                let ready = Summary::of(&ready_ms(&run.timed));
                let _ = writeln!(
                    out,
                    "| {} | Scion, {} | {} | {} | {} | {} | {} |",
                    size_label(size.size),
                    run.label(),
                    self.major,
                    ready.n,
                    ms(ready.median),
                    ms(ready.max),
                    ratio(ready.median, scion),
                );
            }
            for alt in &size.alternatives {
                let summary = Summary::of(&alt.samples);
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    size_label(size.size),
                    alt.method.label(),
                    alt.major,
                    summary.n,
                    ms(summary.median),
                    ms(summary.max),
                    ratio(summary.median, scion),
                );
            }
        }
    }

    fn density(&self, out: &mut String) {
        for size in &self.sizes {
            let Some((backend, density)) = &size.density else { continue };
            let _ = writeln!(
                out,
                "\n#### Density: clones running at once ({}, {})\n",
                backend.label(),
                source_label(size)
            );
            out.push_str("Clones made one after another with `POST /clone?wait=120` and kept; each had one TCP session (its `SELECT 1`). PSS: `Pss` of /proc/<pid>/smaps_rollup summed over each clone's postmaster and children, 5 s after the last clone. Disk: the engine's `cloneDiffSize`, and the growth of the pool's used bytes (statvfs after `sync -f`) divided by the clones: over the first 10 clones right after the tenth was ready (a fresh clone), and over the whole phase (clones that ran for minutes).\n\n");
            out.push_str("| clones asked | running | stopped because | PSS per clone median / p95 / max | `cloneDiffSize` median / max | pool growth per clone, fresh / whole phase | engine RSS before → after | MemAvailable before → after | clone-ready while filling median / p95 |\n");
            out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} / {} / {} | {} / {} | {} / {} | {} → {} | {} → {} | {} / {} |",
                density.target,
                density.running,
                density.stopped_because.as_deref().unwrap_or("–"),
                mib(density.pss.median * 1024.0),
                mib(density.pss.p95 * 1024.0),
                mib(density.pss.max * 1024.0),
                kib(density.diff.median),
                kib(density.diff.max),
                density.fresh_bytes_per_clone.map_or_else(|| "–".to_owned(), kib),
                kib(density.pool_bytes_per_clone),
                mib(density.engine_rss_before_kib as f64 * 1024.0),
                mib(density.engine_rss_after_kib as f64 * 1024.0),
                gib(density.mem_available_before_kib as f64 * 1024.0),
                gib(density.mem_available_after_kib as f64 * 1024.0),
                ms(density.ready.median),
                ms(density.ready.p95),
            );
            let _ = writeln!(out, "\n#### API latency with {} clones running\n", density.running);
            out.push_str("Sequential requests from one keep-alive client, each timed to the end of its body.\n\n");
            out.push_str("| endpoint | clones | requests | median | p99 | max |\n| --- | --- | --- | --- | --- | --- |\n");
            for (path, summary) in
                [("GET /status", density.status_api), ("GET /clones", density.clones_api)]
            {
                let _ = writeln!(
                    out,
                    "| `{path}` | {} | {} | {} | {} | {} |",
                    density.running,
                    summary.n,
                    ms(summary.median),
                    ms(summary.p99),
                    ms(summary.max)
                );
            }
        }
    }
}

impl Report {
    fn bursts(&self, out: &mut String) {
        if self.sizes.iter().all(|size| size.bursts.is_empty()) {
            return;
        }
        out.push_str(
            "\n#### A burst of concurrent creates with the warm pool\n\nAll creates sent at once (`POST /clone?wait` each, then `SELECT 1` over TCP), in the order given, once the warm pool is full (at its configured size, or at the size the server keeps after the bursts before, `scion_warm_pool_target`: the warm pool column); per create from its POST to its `SELECT 1`, and the wall time from the first POST to the last `SELECT 1`. Claims: creates that took a warm clone (`scion_warm_pool_hits_total`).\n\n",
        );
        out.push_str(
            "| source | pool | warm pool | creates | claims | median | p95 | max | wall |\n",
        );
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for size in &self.sizes {
            for (backend, found) in &size.bursts {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    source_label(size),
                    backend.label(),
                    found.warm_ready,
                    found.size,
                    found.warm_hits,
                    ms(found.ready.median),
                    ms(found.ready.p95),
                    ms(found.ready.max),
                    ms(found.wall_ms)
                );
            }
        }
    }

    fn discards(&self, out: &mut String) {
        if self.sizes.iter().all(|size| size.discards.is_empty()) {
            return;
        }
        out.push_str(
            "\n#### Reset and destroy: a dirty clone against an untouched one\n\nReset: `POST /clone/{id}/reset?wait` (to the clone's own snapshot) until the first successful `SELECT 1` on the clone's port; destroy: `DELETE /clone/{id}` until `GET /clone/{id}` answers 404. Dirty: the clone deleted every row of `pgbench_accounts` just before (again before its destroy); the two kinds alternate on one server without a warm pool.\n\n",
        );
        out.push_str("| source | pool | rows deleted | runs | reset untouched median / p95 | reset dirty median / p95 | destroy untouched median / p95 | destroy dirty median / p95 |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
        let pair = |summary: &Summary| format!("{} / {}", ms(summary.median), ms(summary.p95));
        for size in &self.sizes {
            for (backend, found) in &size.discards {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    source_label(size),
                    backend.label(),
                    found.rows_deleted,
                    found.reset_clean.n,
                    pair(&found.reset_clean),
                    pair(&found.reset_dirty),
                    pair(&found.destroy_clean),
                    pair(&found.destroy_dirty)
                );
            }
        }
    }
}

fn source_label(size: &SizeResult) -> String {
    format!(
        "{} / {} (pgbench scale {}; WAL {})",
        size_label(size.loaded.data_dir_bytes),
        size_label(size.loaded.database_bytes),
        size.scale,
        size_label(size.loaded.wal_bytes)
    )
}

/// Milliseconds, or seconds from 10 s on.
pub(crate) fn ms(value: f64) -> String {
    if value >= 10_000.0 { format!("{:.1} s", value / 1000.0) } else { format!("{value:.1} ms") }
}

fn ratio(value: f64, scion: Option<f64>) -> String {
    match scion {
        Some(scion) if scion > 0.0 => format!("{:.1}×", value / scion),
        _ => "–".to_owned(),
    }
}

fn kib(bytes: f64) -> String {
    format!("{:.0} KiB", bytes / 1024.0)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1 << 20) as f64)
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}
