//! Control groups: where a daemon's CPU and memory limits live, on cgroup v1 and v2.
//!
//! A [`CgroupTree`] is one directory per hierarchy the engine owns (`<hierarchy>/<own
//! group>/<name>`), found from `/proc/self/mountinfo` and `/proc/self/cgroup`, so that the groups
//! nest under whatever limits the engine itself runs with. A [`Cgroup`] is one group of that tree:
//! made with its limits before its daemon starts, entered by the daemon's process before it
//! executes (a [`crate::Sandbox`] writes `0` to each `cgroup.procs` as the child's first step, so
//! the program never runs outside its limits), read for its usage, and removed once empty.
//!
//! cgroup v2 keeps every controller in one hierarchy (`memory.max`, `cpu.max`, `memory.events`);
//! v1 has one hierarchy per controller (`memory.limit_in_bytes`, `cpu.cfs_quota_us`). A host may
//! mount both (the hybrid layout) with the controllers in either; [`CgroupTree::detect`] picks v2
//! when its hierarchy offers the memory and cpu controllers, else v1.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The period CPU quotas are expressed in, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup interface a tree uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// One hierarchy per controller.
    V1,
    /// The unified hierarchy.
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// What a group may use. `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// CPU time, in cores (`1.5` is one and a half cores' worth of time per period).
    pub cpu: Option<f64>,
    /// Memory in bytes (swap included where the kernel accounts it).
    pub memory: Option<u64>,
}

/// What a group has used, as the kernel counts it; `None` where this host does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Memory charged to the group now, page cache included.
    pub memory_bytes: Option<u64>,
    /// The most memory charged at once.
    pub memory_peak_bytes: Option<u64>,
    /// Processes the kernel killed for the group's memory limit.
    pub oom_kills: Option<u64>,
    /// CPU time used, in microseconds.
    pub cpu_usage_us: Option<u64>,
    /// Periods in which the group was throttled by its CPU quota.
    pub cpu_throttled_periods: Option<u64>,
}

/// A control group operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The host has no cgroup hierarchy Scion can use.
    #[error("no usable cgroup hierarchy: {0}")]
    Unavailable(String),
    /// The hierarchy lacks a controller a limit needs.
    #[error("the cgroup {version} hierarchy offers no {controller} controller")]
    NoController {
        /// The tree's interface.
        version: CgroupVersion,
        /// `memory` or `cpu`.
        controller: &'static str,
    },
    /// A name that is not one path component.
    #[error("{0:?} is not a valid cgroup name")]
    InvalidName(String),
    /// A file of the cgroup file system could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the kernel said.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

/// Where the engine's groups live: one directory per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupTree {
    version: CgroupVersion,
    /// v2: the one directory. v1: the memory hierarchy's.
    memory: Option<PathBuf>,
    /// v1: the cpu hierarchy's (`None` on v2, where it is `memory`'s).
    cpu: Option<PathBuf>,
}

/// One cgroup mount: where it is, which part of the hierarchy it shows, what it controls.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    point: PathBuf,
    root: String,
    /// v1 controllers (`memory`, `cpu`, …); empty for cgroup2.
    controllers: Vec<String>,
    v2: bool,
}

/// The cgroup mounts of `mountinfo` (the format of `/proc/self/mountinfo`).
fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        // `<id> <parent> <dev> <root> <point> <options> [optional…] - <type> <source> <super>`
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(point), Some(fs_type)) = (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        let root = unescape(root);
        match *fs_type {
            "cgroup2" => mounts.push(Mount { point, root, controllers: Vec::new(), v2: true }),
            "cgroup" => {
                let options = right.get(2).copied().unwrap_or("");
                let controllers = options
                    .split(',')
                    .filter(|option| {
                        !option.contains('=')
                            && !matches!(
                                *option,
                                "rw" | "ro" | "relatime" | "noatime" | "xattr" | "noprefix"
                            )
                    })
                    .map(str::to_owned)
                    .collect();
                mounts.push(Mount { point, root, controllers, v2: false });
            }
            _ => {}
        }
    }
    mounts
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as octal.
fn unescape(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\'
            && index + 3 < bytes.len()
            && let Ok(value) = u8::from_str_radix(&field[index + 1..index + 4], 8)
        {
            out.push(value);
            index += 4;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The process's own group in each hierarchy, from `/proc/self/cgroup`: (controllers, path),
/// the v2 line having no controllers.
fn parse_own(proc_cgroup: &str) -> Vec<(Vec<String>, String)> {
    proc_cgroup
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let controllers = controllers
                .split(',')
                .filter(|name| !name.is_empty())
                .map(|name| name.trim_start_matches("name=").to_owned())
                .collect();
            Some((controllers, path.to_owned()))
        })
        .collect()
}

/// The directory of `own` (a path from `/proc/self/cgroup`) under `mount`.
fn own_dir(mount: &Mount, own: &str) -> PathBuf {
    let relative = own.strip_prefix(mount.root.trim_end_matches('/')).unwrap_or(own);
    let mut dir = mount.point.clone();
    for part in relative.split('/').filter(|part| !part.is_empty()) {
        dir.push(part);
    }
    dir
}

fn check_name(name: &str) -> Result<(), CgroupError> {
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
    if valid { Ok(()) } else { Err(CgroupError::InvalidName(name.to_owned())) }
}

fn read_trimmed(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map(|text| text.trim().to_owned()).map_err(io_error(path))
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_error(path))
}

/// The value of `key` in a flat-keyed file (`memory.events`, `cpu.stat`, `memory.oom_control`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        if name == key { value.trim().parse().ok() } else { None }
    })
}

impl CgroupTree {
    /// The tree `name` under the engine's own groups: cgroup v2 when its hierarchy offers the
    /// memory and cpu controllers to the engine's group, else v1's memory and cpu hierarchies,
    /// else v2 without them (groups that only hold processes; limits are refused).
    /// `prefer` forces one interface where the host has it.
    pub fn detect(name: &str, prefer: Option<CgroupVersion>) -> Result<CgroupTree, CgroupError> {
        check_name(name)?;
        let mountinfo = Path::new("/proc/self/mountinfo");
        let mounts =
            parse_mounts(&std::fs::read_to_string(mountinfo).map_err(io_error(mountinfo))?);
        let own_file = Path::new("/proc/self/cgroup");
        let own = parse_own(&std::fs::read_to_string(own_file).map_err(io_error(own_file))?);
        let v2 = mounts.iter().find(|mount| mount.v2).and_then(|mount| {
            let (_, path) = own.iter().find(|(controllers, _)| controllers.is_empty())?;
            Some(own_dir(mount, path).join(name))
        });
        let v1 = |controller: &str| {
            let mount = mounts
                .iter()
                .find(|mount| !mount.v2 && mount.controllers.iter().any(|c| c == controller))?;
            let (_, path) = own.iter().find(|(controllers, _)| {
                controllers.iter().any(|c| mount.controllers.contains(c))
            })?;
            Some(own_dir(mount, path).join(name))
        };
        let v2_tree = v2.clone().map(|dir| CgroupTree {
            version: CgroupVersion::V2,
            memory: Some(dir),
            cpu: None,
        });
        let v1_tree = match (v1("memory"), v1("cpu")) {
            (None, None) => None,
            (memory, cpu) => Some(CgroupTree { version: CgroupVersion::V1, memory, cpu }),
        };
        let v2_controls = v2.as_ref().is_some_and(|dir| {
            let offered = dir
                .parent()
                .and_then(|parent| std::fs::read_to_string(parent.join("cgroup.controllers")).ok())
                .unwrap_or_default();
            let offered: Vec<&str> = offered.split_whitespace().collect();
            offered.contains(&"memory") && offered.contains(&"cpu")
        });
        let chosen = match prefer {
            Some(CgroupVersion::V2) => v2_tree,
            Some(CgroupVersion::V1) => v1_tree,
            None if v2_controls => v2_tree,
            None => v1_tree.or(v2_tree),
        };
        chosen.ok_or_else(|| {
            CgroupError::Unavailable(match prefer {
                Some(version) => format!("this host mounts no cgroup {version} hierarchy"),
                None => "this host mounts no cgroup hierarchy".to_owned(),
            })
        })
    }

    /// The interface the tree uses.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The tree's directories, one per hierarchy.
    pub fn dirs(&self) -> Vec<&Path> {
        self.memory.iter().chain(self.cpu.iter()).map(PathBuf::as_path).collect()
    }

    /// Refuses `limits` that need a controller this tree lacks, before anything is made.
    pub fn supports(&self, limits: &Limits) -> Result<(), CgroupError> {
        let wanted = [("memory", limits.memory.is_some()), ("cpu", limits.cpu.is_some())];
        for (controller, needed) in wanted {
            let offered = match self.version {
                CgroupVersion::V1 => match controller {
                    "memory" => self.memory.is_some(),
                    _ => self.cpu.is_some(),
                },
                // What the tree's parent offers is what the tree can enable for its groups.
                CgroupVersion::V2 => self
                    .memory
                    .as_ref()
                    .and_then(|dir| dir.parent())
                    .and_then(|parent| {
                        std::fs::read_to_string(parent.join("cgroup.controllers")).ok()
                    })
                    .is_some_and(|offered| {
                        offered.split_whitespace().any(|name| name == controller)
                    }),
            };
            if needed && !offered {
                return Err(CgroupError::NoController { version: self.version, controller });
            }
        }
        Ok(())
    }

    /// The group `name` of this tree (nothing is made until [`Cgroup::create`]).
    pub fn group(&self, name: &str) -> Result<Cgroup, CgroupError> {
        check_name(name)?;
        Ok(Cgroup {
            version: self.version,
            memory: self.memory.as_ref().map(|dir| dir.join(name)),
            cpu: self.cpu.as_ref().map(|dir| dir.join(name)),
        })
    }

    /// The names of the groups that exist in the tree (in any of its hierarchies).
    pub fn groups(&self) -> Result<Vec<String>, CgroupError> {
        let mut names = std::collections::BTreeSet::new();
        for dir in self.dirs() {
            let entries = match std::fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(error) if error.kind() == ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error(dir)(error)),
            };
            for entry in entries {
                let entry = entry.map_err(io_error(dir))?;
                if entry.file_type().map_err(io_error(dir))?.is_dir() {
                    names.insert(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Removes the tree's own directories once they hold no group (best effort: a group
    /// still there keeps them).
    pub fn remove_if_empty(&self) {
        for dir in self.dirs() {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Makes the tree's directories; on v2, with the memory and cpu controllers enabled for
    /// the groups under it where the hierarchy offers them.
    fn create(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
                Err(error) => return Err(io_error(dir)(error)),
            }
        }
        if self.version == CgroupVersion::V2
            && let Some(dir) = &self.memory
        {
            let offered = read_trimmed(&dir.join("cgroup.controllers"))?;
            let wanted: Vec<&str> = offered
                .split_whitespace()
                .filter(|name| matches!(*name, "memory" | "cpu"))
                .collect();
            if !wanted.is_empty() {
                let enable: Vec<String> = wanted.iter().map(|name| format!("+{name}")).collect();
                write(&dir.join("cgroup.subtree_control"), &enable.join(" "))?;
            }
        }
        Ok(())
    }
}

/// One group: its directory in each hierarchy of its tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    version: CgroupVersion,
    memory: Option<PathBuf>,
    cpu: Option<PathBuf>,
}

impl Cgroup {
    /// The interface the group uses.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The group's directories, one per hierarchy.
    pub fn dirs(&self) -> Vec<&Path> {
        self.memory.iter().chain(self.cpu.iter()).map(PathBuf::as_path).collect()
    }

    /// The `cgroup.procs` files a process writes `0` to in order to enter the group.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().into_iter().map(|dir| dir.join("cgroup.procs")).collect()
    }

    /// Makes the group (and its tree) if it does not exist, then applies `limits`.
    pub fn create(&self, tree: &CgroupTree, limits: &Limits) -> Result<(), CgroupError> {
        tree.create()?;
        for dir in self.dirs() {
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
                Err(error) => return Err(io_error(dir)(error)),
            }
        }
        self.set_limits(limits)
    }

    /// Applies `limits` to the existing group; `None` lifts a limit.
    pub fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        match self.version {
            CgroupVersion::V2 => self.set_limits_v2(limits),
            CgroupVersion::V1 => self.set_limits_v1(limits),
        }
    }

    fn set_limits_v2(&self, limits: &Limits) -> Result<(), CgroupError> {
        let Some(dir) = &self.memory else {
            return Err(CgroupError::Unavailable("the group has no directory".to_owned()));
        };
        let missing =
            |controller| CgroupError::NoController { version: CgroupVersion::V2, controller };
        let memory_max = dir.join("memory.max");
        if memory_max.exists() {
            let value = limits.memory.map_or("max".to_owned(), |bytes| bytes.to_string());
            write(&memory_max, &value)?;
            // Without swap the limit is the limit: a clone must not page its way past it.
            let swap_max = dir.join("memory.swap.max");
            if swap_max.exists() {
                write(&swap_max, if limits.memory.is_some() { "0" } else { "max" })?;
            }
        } else if limits.memory.is_some() {
            return Err(missing("memory"));
        }
        let cpu_max = dir.join("cpu.max");
        if cpu_max.exists() {
            let value = match limits.cpu {
                Some(cores) => format!("{} {CPU_PERIOD_US}", cpu_quota_us(cores)),
                None => format!("max {CPU_PERIOD_US}"),
            };
            write(&cpu_max, &value)?;
        } else if limits.cpu.is_some() {
            return Err(missing("cpu"));
        }
        Ok(())
    }

    fn set_limits_v1(&self, limits: &Limits) -> Result<(), CgroupError> {
        let missing =
            |controller| CgroupError::NoController { version: CgroupVersion::V1, controller };
        match &self.memory {
            Some(dir) => {
                let value = limits.memory.map_or("-1".to_owned(), |bytes| bytes.to_string());
                let memory = dir.join("memory.limit_in_bytes");
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    // The kernel keeps memory ≤ memory+swap: lowering goes memory first,
                    // raising memory+swap first. Trying one order and then the other needs no
                    // reading of the current values.
                    if write(&memsw, &value).is_err() {
                        write(&memory, &value)?;
                        write(&memsw, &value)?;
                    } else {
                        write(&memory, &value)?;
                    }
                } else {
                    write(&memory, &value)?;
                }
            }
            None if limits.memory.is_some() => return Err(missing("memory")),
            None => {}
        }
        match &self.cpu {
            Some(dir) => {
                write(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                let quota =
                    limits.cpu.map_or("-1".to_owned(), |cores| cpu_quota_us(cores).to_string());
                write(&dir.join("cpu.cfs_quota_us"), &quota)?;
            }
            None if limits.cpu.is_some() => return Err(missing("cpu")),
            None => {}
        }
        Ok(())
    }

    /// The limits the kernel holds for the group now (`None`: unlimited).
    pub fn limits(&self) -> Result<Limits, CgroupError> {
        let mut limits = Limits::default();
        match self.version {
            CgroupVersion::V2 => {
                if let Some(dir) = &self.memory {
                    let memory = dir.join("memory.max");
                    if memory.exists() {
                        limits.memory = read_trimmed(&memory)?.parse().ok();
                    }
                    let cpu = dir.join("cpu.max");
                    if cpu.exists() {
                        let text = read_trimmed(&cpu)?;
                        let mut parts = text.split_whitespace();
                        if let (Some(Ok(quota)), Some(Ok(period))) = (
                            parts.next().map(str::parse::<u64>),
                            parts.next().map(str::parse::<u64>),
                        ) {
                            limits.cpu = Some(quota as f64 / period as f64);
                        }
                    }
                }
            }
            CgroupVersion::V1 => {
                if let Some(dir) = &self.memory {
                    let bytes: u64 = read_trimmed(&dir.join("memory.limit_in_bytes"))?
                        .parse()
                        .unwrap_or(u64::MAX);
                    // v1 says "unlimited" with the largest page-aligned value.
                    limits.memory = (bytes < i64::MAX as u64 / 2).then_some(bytes);
                }
                if let Some(dir) = &self.cpu {
                    let quota: i64 =
                        read_trimmed(&dir.join("cpu.cfs_quota_us"))?.parse().unwrap_or(-1);
                    let period: u64 = read_trimmed(&dir.join("cpu.cfs_period_us"))?
                        .parse()
                        .unwrap_or(CPU_PERIOD_US);
                    if quota > 0 && period > 0 {
                        limits.cpu = Some(quota as f64 / period as f64);
                    }
                }
            }
        }
        Ok(limits)
    }

    /// What the group has used; a counter this host does not keep is `None`.
    pub fn usage(&self) -> Usage {
        let read = |dir: &Option<PathBuf>, file: &str| {
            dir.as_ref().and_then(|dir| std::fs::read_to_string(dir.join(file)).ok())
        };
        let number = |text: Option<String>| text.and_then(|text| text.trim().parse::<u64>().ok());
        match self.version {
            CgroupVersion::V2 => {
                let stat = read(&self.memory, "cpu.stat").unwrap_or_default();
                Usage {
                    memory_bytes: number(read(&self.memory, "memory.current")),
                    memory_peak_bytes: number(read(&self.memory, "memory.peak")),
                    oom_kills: read(&self.memory, "memory.events")
                        .and_then(|text| keyed(&text, "oom_kill")),
                    cpu_usage_us: keyed(&stat, "usage_usec"),
                    cpu_throttled_periods: keyed(&stat, "nr_throttled"),
                }
            }
            CgroupVersion::V1 => Usage {
                memory_bytes: number(read(&self.memory, "memory.usage_in_bytes")),
                memory_peak_bytes: number(read(&self.memory, "memory.max_usage_in_bytes")),
                oom_kills: read(&self.memory, "memory.oom_control")
                    .and_then(|text| keyed(&text, "oom_kill")),
                // cpuacct shares the cpu hierarchy on most hosts (`cpu,cpuacct`).
                cpu_usage_us: number(read(&self.cpu, "cpuacct.usage")).map(|ns| ns / 1000),
                cpu_throttled_periods: read(&self.cpu, "cpu.stat")
                    .and_then(|text| keyed(&text, "nr_throttled")),
            },
        }
    }

    /// The processes in the group (in any of its hierarchies).
    pub fn pids(&self) -> Result<Vec<u32>, CgroupError> {
        let mut pids = std::collections::BTreeSet::new();
        for file in self.procs_files() {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(error) if error.kind() == ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error(&file)(error)),
            };
            pids.extend(text.lines().filter_map(|line| line.trim().parse::<u32>().ok()));
        }
        Ok(pids.into_iter().collect())
    }

    /// Whether the group exists in any of its hierarchies.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|dir| dir.is_dir())
    }

    /// Removes the group. It must hold no process (the kernel refuses with `EBUSY`); a group
    /// that is not there is not an error.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::NotFound => {}
                Err(error) => return Err(io_error(dir)(error)),
            }
        }
        Ok(())
    }
}

/// `cores` as microseconds of CPU time per period; at least 1 ms, the kernel's minimum.
fn cpu_quota_us(cores: f64) -> u64 {
    ((cores * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
29 23 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
30 29 0:27 / /sys/fs/cgroup/unified rw,relatime shared:6 - cgroup2 cgroup2 rw,nsdelegate
32 29 0:29 / /sys/fs/cgroup/memory rw,relatime shared:8 - cgroup cgroup rw,memory
33 29 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 29 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
";

    #[test]
    fn mounts_and_own_groups_are_parsed() {
        let mounts = parse_mounts(HYBRID);
        assert_eq!(mounts.len(), 4, "{mounts:#?}");
        assert!(mounts[0].v2);
        assert_eq!(mounts[1].controllers, ["memory"]);
        assert_eq!(mounts[2].controllers, ["cpu", "cpuacct"]);
        assert!(mounts[3].controllers.is_empty(), "{:?}", mounts[3].controllers);
        let own = parse_own("4:memory:/engine.service\n3:cpu,cpuacct:/\n0::/engine.service\n");
        assert_eq!(own[0], (vec!["memory".to_owned()], "/engine.service".to_owned()));
        assert_eq!(own[2], (Vec::<String>::new(), "/engine.service".to_owned()));
        assert_eq!(
            own_dir(&mounts[1], "/engine.service"),
            Path::new("/sys/fs/cgroup/memory/engine.service")
        );
        let inner = Mount { root: "/outer".to_owned(), ..mounts[1].clone() };
        assert_eq!(own_dir(&inner, "/outer/inner"), Path::new("/sys/fs/cgroup/memory/inner"));
    }

    #[test]
    fn names_are_one_component() {
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("scion-1f2e.6000").is_ok());
    }

    #[test]
    fn keyed_files_and_quotas() {
        assert_eq!(keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"), Some(3));
        assert_eq!(keyed("usage_usec 12\n", "nr_throttled"), None);
        assert_eq!(cpu_quota_us(1.5), 150_000);
        assert_eq!(cpu_quota_us(0.0001), 1000);
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    /// A tree of this test process's own, removed with everything in it when dropped.
    struct TestTree(CgroupTree);

    impl TestTree {
        fn new(version: CgroupVersion, test: &str) -> TestTree {
            let name = format!("scion-test-{test}-{}", std::process::id());
            TestTree(CgroupTree::detect(&name, Some(version)).unwrap())
        }
    }

    impl Drop for TestTree {
        fn drop(&mut self) {
            for name in self.0.groups().unwrap_or_default() {
                let _ = self.0.group(&name).map(|group| group.remove());
            }
            self.0.remove_if_empty();
        }
    }

    /// Runs `script` with `sh` in a sandbox inside `group`; returns how it ended and its output.
    async fn run_in(group: &Cgroup, script: &str) -> (crate::ExitInfo, String) {
        let base = std::env::temp_dir().join(format!("scion-cgroup-run-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let log = std::fs::File::create(base.join("log")).unwrap();
        let mut daemon = crate::Cmd::new("/bin/sh")
            .args(["-c", script])
            .user(65534, 65534)
            .sandbox(crate::Sandbox::new(&root).cgroup(group.clone()))
            .spawn_daemon(log)
            .unwrap();
        let status = daemon.exited().await;
        let output = std::fs::read_to_string(base.join("log")).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
        (status, output)
    }

    /// Runs a program that allocates 256 MiB in `group` (limited to 64 MiB) and checks that the
    /// kernel killed it, counted in the group's usage.
    async fn assert_killed_at_limit(group: &Cgroup) {
        let script = "exec /usr/bin/perl -e '$x = \"x\" x (256 * 1024 * 1024); print length $x'";
        let (status, output) = run_in(group, script).await;
        assert_eq!(status, crate::ExitInfo::Signal(9), "{output}");
        let usage = group.usage();
        assert!(usage.oom_kills.unwrap() >= 1, "{usage:?}");
        assert!(usage.memory_peak_bytes.unwrap() <= 64 << 20, "{usage:?}");
    }

    /// The group's path as `/proc/<pid>/cgroup` names it in the hierarchy of `dir`.
    fn proc_path(dir: &Path) -> String {
        let mount = parse_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap())
            .into_iter()
            .filter(|mount| dir.starts_with(&mount.point))
            .max_by_key(|mount| mount.point.as_os_str().len())
            .unwrap();
        let relative = dir.strip_prefix(&mount.point).unwrap();
        format!("{}/{}", mount.root.trim_end_matches('/'), relative.display())
    }

    /// Runs as root. cgroup v1 here holds the memory and cpu controllers: the limits are set,
    /// the program runs inside from its start, and a program that allocates past the memory
    /// limit is killed by the kernel, counted in the group's usage.
    #[tokio::test]
    async fn v1_limits_hold_a_sandboxed_program_from_its_start() {
        let tree = TestTree::new(CgroupVersion::V1, "v1");
        let group = tree.0.group("g").unwrap();
        let limits = Limits { cpu: Some(0.5), memory: Some(64 << 20) };
        tree.0.supports(&limits).unwrap();
        group.create(&tree.0, &limits).unwrap();
        assert_eq!(group.limits().unwrap(), limits);
        let (status, output) = run_in(&group, "cat /proc/self/cgroup").await;
        assert_eq!(status, crate::ExitInfo::Code(0), "{output}");
        for dir in group.dirs() {
            let expected = proc_path(dir);
            assert!(
                output.lines().any(|line| line.ends_with(&format!(":{expected}"))),
                "{expected} in:\n{output}"
            );
        }
        assert_killed_at_limit(&group).await;
        // Lifting the limits is writing them back as unlimited.
        group.set_limits(&Limits::default()).unwrap();
        assert_eq!(group.limits().unwrap(), Limits::default());
        assert_eq!(tree.0.groups().unwrap(), ["g"]);
        group.remove().unwrap();
        assert!(!group.exists());
        assert!(tree.0.groups().unwrap().is_empty());
    }

    /// cgroup v2 as far as this host lets it: groups, placement at the start, the processes
    /// listed and removal always; the limits only where the hierarchy offers the controllers
    /// (a hybrid host keeps them in v1, and then a limit is refused by name).
    #[tokio::test]
    async fn v2_places_a_sandboxed_program_and_limits_where_offered() {
        let tree = TestTree::new(CgroupVersion::V2, "v2");
        let group = tree.0.group("g").unwrap();
        group.create(&tree.0, &Limits::default()).unwrap();
        let (status, output) = run_in(&group, "cat /proc/self/cgroup").await;
        assert_eq!(status, crate::ExitInfo::Code(0), "{output}");
        let expected = format!("0::{}", proc_path(group.dirs()[0]));
        assert!(output.lines().any(|line| line == expected), "{expected} in:\n{output}");
        let offered = std::fs::read_to_string(tree.0.dirs()[0].join("cgroup.controllers")).unwrap();
        let limits = Limits { cpu: Some(0.5), memory: Some(64 << 20) };
        if offered.split_whitespace().any(|name| name == "memory") {
            group.set_limits(&limits).unwrap();
            assert_eq!(group.limits().unwrap(), limits);
            assert_killed_at_limit(&group).await;
        } else {
            assert!(tree.0.supports(&limits).is_err());
            let error = group.set_limits(&limits).unwrap_err();
            assert!(
                matches!(error, CgroupError::NoController { version: CgroupVersion::V2, .. }),
                "{error}"
            );
        }
        group.remove().unwrap();
        assert!(tree.0.groups().unwrap().is_empty());
    }

    /// A running program is listed in its group, which cannot be removed until it is gone.
    #[tokio::test]
    async fn a_group_with_a_process_is_not_removed() {
        let tree = TestTree::new(CgroupVersion::V1, "busy");
        let group = tree.0.group("g").unwrap();
        group.create(&tree.0, &Limits::default()).unwrap();
        let base = std::env::temp_dir().join(format!("scion-cgroup-busy-{}", std::process::id()));
        std::fs::create_dir_all(base.join("root")).unwrap();
        let log = std::fs::File::create(base.join("log")).unwrap();
        let mut daemon = crate::Cmd::new("/bin/sleep")
            .arg("600")
            .sandbox(crate::Sandbox::new(base.join("root")).cgroup(group.clone()))
            .spawn_daemon(log)
            .unwrap();
        assert_eq!(group.pids().unwrap(), [daemon.pid()]);
        assert!(group.remove().is_err());
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon.pid() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        assert_eq!(daemon.exited().await, crate::ExitInfo::Signal(9));
        group.remove().unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }
}
