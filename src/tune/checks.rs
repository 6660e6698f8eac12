//! The host checks as pure functions: each takes what was read from /proc, /sys or a system
//! call (a [`Facts`], or the text of one file) and says what it found, what shardlog wants
//! and why, and what `--apply` would write. Nothing here touches the machine, so every rule
//! is tested with fixture text (`tests` below); [`super::host`] does the reading and writing.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// Where the sysctls the checks read and `--apply` writes live.
pub const IO_URING_DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";
/// vm.swappiness.
pub const SWAPPINESS: &str = "/proc/sys/vm/swappiness";
/// Transparent huge pages mode.
pub const THP_ENABLED: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
/// The clock source in use.
pub const CLOCKSOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
/// The most CPUs a cpu list may name (a bound on what bad input can make us allocate).
pub const CPUS_MAX: usize = 65_536;
/// glommio's io_uring submission depth per ring: the queue depth a shard can use.
pub const RING_DEPTH: u64 = 128;
/// Most IRQs printed one by one per device; more are summarised.
const IRQS_LISTED_MAX: usize = 8;

/// A value read from the host, or why it could not be.
pub type Read = Result<String, Unread>;

/// Why a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    /// The file does not exist (the kernel or the platform has no such setting).
    pub missing: bool,
    /// What went wrong, with the path.
    pub reason: String,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// As recommended.
    Ok,
    /// Works, but costs latency or throughput, or risks it.
    Warn,
    /// The broker will not run well, or not at all.
    Fail,
    /// The setting could not be read here (container, VM, missing driver).
    Unknown,
}

impl Status {
    /// The word printed in the first column.
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Unknown => "unknown",
        }
    }
}

/// One write `--apply` would do: `value` into the file at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// A procfs or sysfs file.
    pub path: PathBuf,
    /// What to write into it.
    pub value: String,
}

/// One checked setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// A short name, one word (`swappiness`).
    pub name: &'static str,
    /// How it came out.
    pub status: Status,
    /// The value found, or `could not read: why`.
    pub found: String,
    /// The value shardlog wants.
    pub recommended: String,
    /// What the setting does for shardlog.
    pub why: &'static str,
    /// The writes `--apply` does when the check is not ok (empty: it cannot change it).
    pub fix: Vec<Write>,
    /// How to change it by hand when `--apply` cannot.
    pub manual: Option<&'static str>,
}

impl Check {
    fn new(name: &'static str, why: &'static str) -> Check {
        Check {
            name,
            status: Status::Ok,
            found: String::new(),
            recommended: String::new(),
            why,
            fix: Vec::new(),
            manual: None,
        }
    }

    fn found(mut self, status: Status, found: impl Into<String>) -> Check {
        self.status = status;
        self.found = found.into();
        self
    }

    fn recommend(mut self, r: impl Into<String>) -> Check {
        self.recommended = r.into();
        self
    }

    fn unread(self, u: &Unread) -> Check {
        self.found(Status::Unknown, format!("could not read: {}", u.reason))
    }

    fn fix(mut self, path: impl Into<PathBuf>, value: impl Into<String>) -> Check {
        self.fix.push(Write {
            path: path.into(),
            value: value.into(),
        });
        self
    }

    fn manual(mut self, how: &'static str) -> Check {
        self.manual = Some(how);
        self
    }
}

/// A resource limit (soft, hard); None is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The limit the process gets.
    pub soft: Option<u64>,
    /// The ceiling it may raise the soft limit to.
    pub hard: Option<u64>,
}

/// The data directory's block device, as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The whole disk's name (`vda`, `nvme0n1`), a partition's parent.
    pub name: String,
    /// Its sysfs directory (`/sys/block/vda`).
    pub sysfs: PathBuf,
    /// `queue/scheduler`.
    pub scheduler: Read,
    /// `queue/nr_requests`.
    pub nr_requests: Read,
    /// `queue/write_cache`.
    pub write_cache: Read,
    /// `queue/rotational`.
    pub rotational: Read,
}

/// The IRQs of one device (the data disk or a NIC) with their CPU affinity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIrqs {
    /// The device's name (`vda`, `eth0`).
    pub label: String,
    /// (IRQ, its `smp_affinity_list`).
    pub irqs: Vec<(u32, Read)>,
}

/// Everything the checks look at, read once at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Shards the broker will run (one per core by default).
    pub shards: usize,
    /// Cores online.
    pub cores: usize,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: Read,
    /// `/proc/sys/kernel/io_uring_disabled`.
    pub io_uring_disabled: Read,
    /// Whether an io_uring_setup system call succeeds.
    pub io_uring_setup: Result<(), String>,
    /// RLIMIT_MEMLOCK.
    pub memlock: Result<Limit, String>,
    /// RLIMIT_NOFILE.
    pub nofile: Result<Limit, String>,
    /// Open files the broker may need: connections, segment files and some to spare.
    pub nofile_needed: u64,
    /// The directory checked (the data dir, or its nearest existing parent).
    pub data_dir: PathBuf,
    /// `/proc/self/mountinfo`.
    pub mountinfo: Read,
    /// Whether an O_DIRECT write into the data dir works.
    pub o_direct: Result<(), String>,
    /// The data dir's block device.
    pub block: Result<Block, String>,
    /// Per CPU: (cpu, `scaling_governor`, `scaling_available_governors`).
    pub governors: Result<Vec<(usize, Read, Read)>, String>,
    /// `/sys/kernel/mm/transparent_hugepage/enabled`.
    pub thp: Read,
    /// `/proc/sys/vm/swappiness`.
    pub swappiness: Read,
    /// `/proc/sys/fs/aio-max-nr` and `aio-nr`.
    pub aio: (Read, Read),
    /// The clock source in use, and those available.
    pub clocksource: (Read, Read),
    /// NUMA nodes: (node, its cpulist).
    pub numa: Result<Vec<(usize, String)>, String>,
    /// IRQs of the data disk and the NICs, or why none could be found.
    pub irqs: Result<Vec<DeviceIrqs>, String>,
}

/// Every check, in the order printed.
pub fn evaluate(f: &Facts) -> Vec<Check> {
    let mut out = vec![
        kernel(&f.kernel),
        io_uring_disabled(&f.io_uring_disabled),
        io_uring_setup(&f.io_uring_setup),
        memlock(&f.memlock, f.shards),
        nofile(&f.nofile, f.nofile_needed),
        data_dir_fs(&f.mountinfo, &f.data_dir),
        o_direct(&f.o_direct, &f.data_dir),
    ];
    out.extend(block_checks(&f.block));
    out.extend([
        cpu_governor(&f.governors),
        transparent_hugepages(&f.thp),
        swappiness(&f.swappiness),
        irq_affinity(&f.irqs, f.shards, f.cores),
        aio_max_nr(&f.aio.0, &f.aio.1),
        clocksource(&f.clocksource.0, &f.clocksource.1),
        numa(&f.numa, f.shards),
    ]);
    out
}

/// `5.15.0-91-generic` → (5, 15).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn kernel(r: &Read) -> Check {
    let c = Check::new(
        "kernel",
        "glommio needs io_uring as in Linux 5.8; 5.15 and later have the io_uring fixes and \
         features (registered buffers without memlock accounting from 5.12) it runs best on",
    )
    .recommend("5.15 or newer")
    .manual("upgrade the kernel");
    let release = match r {
        Ok(v) => v.trim().to_string(),
        Err(u) => return c.unread(u),
    };
    match kernel_version(&release) {
        Some(v) if v >= (5, 15) => c.found(Status::Ok, release),
        Some(v) if v >= (5, 8) => c.found(Status::Warn, release),
        Some(_) => c.found(Status::Fail, release),
        None => c.found(Status::Unknown, format!("could not parse {release:?}")),
    }
}

fn io_uring_disabled(r: &Read) -> Check {
    let c = Check::new(
        "io_uring_disabled",
        "every disk and network operation of a shard goes through io_uring; 1 allows it only \
         to the group in kernel.io_uring_group, 2 to no one, and the broker cannot start",
    )
    .recommend("0");
    match r {
        Err(u) if u.missing => c.found(
            Status::Ok,
            "absent (the kernel predates the switch: io_uring is allowed)",
        ),
        Err(u) => c.unread(u),
        Ok(v) => match v.trim() {
            "0" => c.found(Status::Ok, "0"),
            "1" => c.found(Status::Warn, "1").fix(IO_URING_DISABLED, "0"),
            other => c.found(Status::Fail, other).fix(IO_URING_DISABLED, "0"),
        },
    }
}

fn io_uring_setup(r: &Result<(), String>) -> Check {
    let c = Check::new(
        "io_uring_setup",
        "a trial io_uring_setup(2) call: seccomp profiles (Docker's default before 25.0), \
         gVisor and some container sandboxes refuse it even when the sysctl allows io_uring",
    )
    .recommend("works")
    .manual("allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile");
    match r {
        Ok(()) => c.found(Status::Ok, "works"),
        Err(e) => c.found(Status::Fail, format!("fails: {e}")),
    }
}

/// `n` bytes for humans: `8 MiB`, `512 KiB`, `unlimited`.
pub fn bytes(n: Option<u64>) -> String {
    match n {
        None => "unlimited".into(),
        Some(n) if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        Some(n) if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        Some(n) if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        Some(n) => format!("{n} bytes"),
    }
}

fn memlock(r: &Result<Limit, String>, shards: usize) -> Check {
    // Each shard registers 2 MiB of I/O buffers with io_uring; room for twice that.
    let want = (shards.max(1) as u64) * (4 << 20);
    let c = Check::new(
        "memlock",
        "each shard registers a 2 MiB I/O buffer pool with io_uring, which counts against \
         RLIMIT_MEMLOCK; glommio refuses to start below 512 KiB and, short of the pool, \
         falls back to unregistered buffers (a copy per I/O)",
    )
    .recommend(format!("unlimited, at least {}", bytes(Some(want))))
    .manual("LimitMEMLOCK=infinity in the systemd unit, or `ulimit -l unlimited` before starting");
    match r {
        Err(e) => c.found(Status::Unknown, format!("could not read: {e}")),
        Ok(l) => {
            let found = format!("{} (hard {})", bytes(l.soft), bytes(l.hard));
            match l.soft {
                None => c.found(Status::Ok, found),
                Some(s) if s >= want => c.found(Status::Ok, found),
                Some(s) if s < 512 << 10 => c.found(Status::Fail, found),
                Some(_) => c.found(Status::Warn, found),
            }
        }
    }
}

fn nofile(r: &Result<Limit, String>, needed: u64) -> Check {
    let c = Check::new(
        "nofile",
        "every client connection and every open segment file (and its index) is a file \
         descriptor: --connections-max plus --segment-files-open-max per shard, and some to \
         spare",
    )
    .recommend(format!("at least {needed}"))
    .manual("LimitNOFILE= in the systemd unit, or `ulimit -n` before starting");
    match r {
        Err(e) => c.found(Status::Unknown, format!("could not read: {e}")),
        Ok(l) => {
            let show =
                |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |v| v.to_string());
            let found = format!("{} (hard {})", show(l.soft), show(l.hard));
            match l.soft {
                Some(s) if s < needed => c.found(Status::Warn, found),
                _ => c.found(Status::Ok, found),
            }
        }
    }
}

/// A mount from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub point: PathBuf,
    /// The file system type (`ext4`).
    pub fstype: String,
    /// The mount source (`/dev/vda`).
    pub source: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = (d[0] - b'0') as u32 * 64 + (d[1] - b'0') as u32 * 8 + (d[2] - b'0') as u32;
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount holding `path` (an absolute, canonical path): the longest mount point that is a
/// prefix of it, the last one mounted when several are.
pub fn mount_of(mountinfo: &str, path: &std::path::Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut r = right.split(' ');
        let (Some(fstype), Some(source)) = (r.next(), r.next()) else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        if !path.starts_with(&point) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|b| point.as_os_str().len() >= b.point.as_os_str().len());
        if longer {
            best = Some(Mount {
                point,
                fstype: fstype.to_string(),
                source: unescape(source),
            });
        }
    }
    best
}

fn data_dir_fs(r: &Read, dir: &std::path::Path) -> Check {
    let c = Check::new(
        "data_dir_fs",
        "segments are written with O_DIRECT in block-aligned writes and preallocated with \
         fallocate: XFS or ext4 on a local SSD/NVMe do both well; tmpfs keeps the log in \
         memory, gone at a reboot (and has no O_DIRECT before Linux 6.6); overlay, network \
         and copy-on-write file systems add latency or lack O_DIRECT",
    )
    .recommend("xfs or ext4")
    .manual("put --data-dir on an XFS or ext4 file system of its own");
    let info = match r {
        Ok(v) => v,
        Err(u) => return c.unread(u),
    };
    let Some(m) = mount_of(info, dir) else {
        return c.found(
            Status::Unknown,
            format!("could not read: no mount holds {}", dir.display()),
        );
    };
    let found = format!(
        "{} on {} (mounted at {}, for {})",
        m.fstype,
        m.source,
        m.point.display(),
        dir.display()
    );
    let status = match m.fstype.as_str() {
        "xfs" | "ext4" => Status::Ok,
        "tmpfs" | "ramfs" | "proc" | "sysfs" => Status::Fail,
        _ => Status::Warn,
    };
    c.found(status, found)
}

fn o_direct(r: &Result<(), String>, dir: &std::path::Path) -> Check {
    let c = Check::new(
        "o_direct",
        "a trial O_DIRECT write of one 4 KiB block in the data dir (a probe file, removed \
         after): the broker's segment writes and reads bypass the page cache this way",
    )
    .recommend("works")
    .manual("use a file system with O_DIRECT support (not tmpfs) for --data-dir");
    match r {
        Ok(()) => c.found(Status::Ok, format!("works in {}", dir.display())),
        Err(e) => c.found(Status::Fail, format!("fails in {}: {e}", dir.display())),
    }
}

/// The scheduler in brackets, and all on offer: `none [mq-deadline] kyber`.
pub fn scheduler(contents: &str) -> Option<(String, Vec<String>)> {
    let mut current = None;
    let mut all = Vec::new();
    for word in contents.split_whitespace() {
        let name = word.trim_start_matches('[').trim_end_matches(']');
        if word.starts_with('[') {
            current = Some(name.to_string());
        }
        all.push(name.to_string());
    }
    Some((current?, all))
}

fn block_checks(r: &Result<Block, String>) -> Vec<Check> {
    match r {
        Ok(b) => vec![
            disk_scheduler(b),
            nr_requests(b),
            write_cache(b),
            rotational(b),
        ],
        Err(e) => {
            let unknown = |name: &'static str, why: &'static str| {
                Check::new(name, why).found(Status::Unknown, format!("could not read: {e}"))
            };
            vec![
                unknown("scheduler", SCHEDULER_WHY),
                unknown("nr_requests", NR_REQUESTS_WHY),
                unknown("write_cache", WRITE_CACHE_WHY),
                unknown("rotational", ROTATIONAL_WHY),
            ]
        }
    }
}

const SCHEDULER_WHY: &str = "the broker already orders and batches its writes (group commit, one \
     sequential log per partition); on SSD/NVMe and virtual disks `none` hands them to the \
     device without a scheduler's queueing and locking (fsync'd appends 15-20 % faster on \
     this project's virtio disk, tuning/README.md), on a rotating disk mq-deadline bounds \
     the seeks";

/// Whether `name` is a paravirtual disk (virtio-blk `vd*`, Xen `xvd*`): the host schedules its
/// I/O, whatever its `rotational` flag claims.
pub fn is_virtual_disk(name: &str) -> bool {
    name.starts_with("vd") || name.starts_with("xvd")
}

fn disk_scheduler(b: &Block) -> Check {
    let flagged = matches!(b.rotational.as_deref().map(str::trim), Ok("1"));
    let virtual_disk = is_virtual_disk(&b.name);
    let rotating = flagged && !virtual_disk;
    let want = if rotating { "mq-deadline" } else { "none" };
    let c = Check::new("scheduler", SCHEDULER_WHY).recommend(format!(
        "{want} ({})",
        match (rotating, virtual_disk) {
            (true, _) => "the kernel says the disk rotates",
            (false, true) => "a virtual disk: the host schedules",
            (false, false) => "SSD/NVMe",
        }
    ));
    let contents = match &b.scheduler {
        Ok(v) => v,
        Err(u) => return c.unread(u),
    };
    let Some((current, offered)) = scheduler(contents) else {
        return c.found(Status::Ok, format!("{} on {}", contents.trim(), b.name));
    };
    let found = format!("{current} on {}", b.name);
    if current == want {
        return c.found(Status::Ok, found);
    }
    let c = c.found(Status::Warn, found);
    if offered.iter().any(|s| s == want) {
        c.fix(b.sysfs.join("queue/scheduler"), want)
    } else {
        c.manual("the kernel does not offer it for this device")
    }
}

const NR_REQUESTS_WHY: &str = "how many requests the block layer queues for the device; each \
     shard keeps up to 128 I/O in flight (its io_uring depth), so a shallower queue makes \
     them wait in the kernel";

fn nr_requests(b: &Block) -> Check {
    let c = Check::new("nr_requests", NR_REQUESTS_WHY).recommend(format!("at least {RING_DEPTH}"));
    let v = match &b.nr_requests {
        Ok(v) => v.trim().to_string(),
        Err(u) => return c.unread(u),
    };
    match v.parse::<u64>() {
        Ok(n) if n >= RING_DEPTH => c.found(Status::Ok, format!("{n} on {}", b.name)),
        Ok(n) => c
            .found(Status::Warn, format!("{n} on {}", b.name))
            .fix(b.sysfs.join("queue/nr_requests"), RING_DEPTH.to_string()),
        Err(_) => c.found(Status::Unknown, format!("could not parse {v:?}")),
    }
}

const WRITE_CACHE_WHY: &str = "with `write back` the device has a volatile cache and fdatasync \
     (every flush.ms, or per batch with flush.messages=1) makes the kernel flush it: durable, \
     at a cost per flush; `write through` skips the flush and is only safe on devices with \
     power-loss protection. The broker is correct with either, so --apply leaves it";

fn write_cache(b: &Block) -> Check {
    let c = Check::new("write_cache", WRITE_CACHE_WHY)
        .recommend("write back, unless the device has power-loss protection");
    match &b.write_cache {
        Ok(v) => match v.trim() {
            m @ ("write back" | "write through") => {
                c.found(Status::Ok, format!("{m} on {}", b.name))
            }
            other => c.found(Status::Unknown, format!("could not parse {other:?}")),
        },
        Err(u) => c.unread(u),
    }
}

const ROTATIONAL_WHY: &str = "a log broker wants an SSD or NVMe device: consumers reading old \
     data while producers append make a rotating disk seek; virtual disks often claim to \
     rotate whatever is underneath";

fn rotational(b: &Block) -> Check {
    let c = Check::new("rotational", ROTATIONAL_WHY)
        .recommend("0 (SSD/NVMe)")
        .manual("put --data-dir on an SSD or NVMe device");
    match &b.rotational {
        Ok(v) if v.trim() == "0" => c.found(Status::Ok, format!("0 on {}", b.name)),
        Ok(v) if v.trim() == "1" => c.found(Status::Warn, format!("1 on {}", b.name)),
        Ok(v) => c.found(Status::Unknown, format!("could not parse {:?}", v.trim())),
        Err(u) => c.unread(u),
    }
}

fn cpu_governor(r: &Result<Vec<(usize, Read, Read)>, String>) -> Check {
    let c = Check::new(
        "cpu_governor",
        "a shard polls its rings and runs without sleeping while there is work; a powersave \
         or ondemand governor lowers the clock between bursts, which shows as latency when \
         the next burst arrives",
    )
    .recommend("performance");
    let cpus = match r {
        Ok(c) => c,
        Err(e) => return c.found(Status::Unknown, format!("could not read: {e}")),
    };
    let Some((_, first, _)) = cpus.first() else {
        return c.found(Status::Unknown, "could not read: no CPU listed in sysfs");
    };
    if let Err(u) = first {
        return c.unread(u);
    }
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut fix = Vec::new();
    for (cpu, gov, available) in cpus {
        let g = gov.as_deref().map_or("?", str::trim).to_string();
        let offered = available
            .as_deref()
            .is_ok_and(|a| a.split_whitespace().any(|x| x == "performance"));
        if g != "performance" && offered {
            fix.push((*cpu, g.clone()));
        }
        found.insert(g);
    }
    let found = found.into_iter().collect::<Vec<_>>().join(",");
    if found == "performance" {
        return c.found(Status::Ok, found);
    }
    let mut c = c.found(Status::Warn, found);
    for (cpu, _) in fix {
        c = c.fix(
            format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
            "performance",
        );
    }
    c
}

/// The bracketed choice of a sysfs multiple-choice file: `always [madvise] never` → madvise.
pub fn bracketed(contents: &str) -> Option<&str> {
    let start = contents.find('[')? + 1;
    let end = start + contents[start..].find(']')?;
    Some(&contents[start..end])
}

fn transparent_hugepages(r: &Read) -> Check {
    let c = Check::new(
        "transparent_hugepages",
        "the read cache grows to GiBs of heap; with THP at madvise (or always) glibc can back \
         it with huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1), about 500 times fewer \
         page faults while the cache fills; `never` rules that out",
    )
    .recommend("madvise");
    let v = match r {
        Ok(v) => v,
        Err(u) => return c.unread(u),
    };
    match bracketed(v) {
        Some(m @ ("madvise" | "always")) => c.found(Status::Ok, m),
        Some(m) => c.found(Status::Warn, m).fix(THP_ENABLED, "madvise"),
        None => c.found(Status::Unknown, format!("could not parse {:?}", v.trim())),
    }
}

fn swappiness(r: &Read) -> Check {
    let c = Check::new(
        "swappiness",
        "the read cache and the buffers in flight are anonymous memory: with a high \
         swappiness the kernel swaps them out under page-cache pressure and a fetch waits \
         for the swap device",
    )
    .recommend("1");
    let v = match r {
        Ok(v) => v.trim().to_string(),
        Err(u) => return c.unread(u),
    };
    match v.parse::<u32>() {
        Ok(n) if n <= 1 => c.found(Status::Ok, v),
        Ok(_) => c.found(Status::Warn, v).fix(SWAPPINESS, "1"),
        Err(_) => c.found(Status::Unknown, format!("could not parse {v:?}")),
    }
}

/// `0-3,8,10-11` → the CPUs; None when malformed or naming more than [`CPUS_MAX`].
pub fn cpu_list(s: &str) -> Option<BTreeSet<usize>> {
    let mut out = BTreeSet::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let n = part.parse::<usize>().ok()?;
                (n, n)
            }
        };
        if lo > hi || hi >= CPUS_MAX || out.len() + (hi - lo) >= CPUS_MAX {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

/// CPUs as a compact list: {0,1,2,5} → `0-2,5`.
pub fn format_cpus(cpus: &BTreeSet<usize>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = cpus.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// Whether a /proc/interrupts name token belongs to the device called `key`: a PCI address
/// (`0000:00:02.0`) anywhere in it, or a name (`virtio1`, `nvme0`, `eth0`) followed by
/// something other than a digit (`virtio1-req.0`, `nvme0q3`, not `virtio10-config`).
fn token_matches(token: &str, key: &str) -> bool {
    if key.contains(':') {
        return token.contains(key);
    }
    token
        .strip_prefix(key)
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// The IRQ numbers in /proc/interrupts whose description names one of `keys`.
pub fn irqs_named(interrupts: &str, keys: &[String]) -> Vec<u32> {
    let mut out = Vec::new();
    for line in interrupts.lines() {
        let mut tokens = line.split_whitespace();
        let Some(irq) = tokens.next().and_then(|t| t.strip_suffix(':')) else {
            continue;
        };
        let Ok(irq) = irq.parse::<u32>() else {
            continue;
        };
        if tokens.any(|t| keys.iter().any(|k| token_matches(t, k))) {
            out.push(irq);
        }
    }
    out
}

/// The cores the shards run on: 0..shards when pinned (shards ≤ cores), else all of them.
pub fn shard_cores(shards: usize, cores: usize) -> BTreeSet<usize> {
    (0..shards.min(cores).max(1)).collect()
}

fn irq_affinity(r: &Result<Vec<DeviceIrqs>, String>, shards: usize, cores: usize) -> Check {
    let c = Check::new(
        "irq_affinity",
        "the disk's completions and the NIC's packets interrupt whichever core their IRQ \
         points at; with a shard on every core spread them (irqbalance does), with fewer \
         shards than cores keep them on the cores no shard runs on",
    );
    let devices = match r {
        Ok(d) => d,
        Err(e) => return c.found(Status::Unknown, format!("could not read: {e}")),
    };
    let shard = shard_cores(shards, cores);
    let spare: BTreeSet<usize> = (0..cores).filter(|c| !shard.contains(c)).collect();
    let c = if spare.is_empty() {
        c.recommend("spread over all cores (a shard runs on every core)")
    } else {
        let cores = if spare.len() == 1 { "core" } else { "cores" };
        c.recommend(format!("{cores} {} (no shard there)", format_cpus(&spare)))
    };
    let mut parts = Vec::new();
    let mut status = Status::Ok;
    let mut fix = Vec::new();
    for d in devices {
        if d.irqs.is_empty() {
            parts.push(format!("{}: no IRQ found", d.label));
            continue;
        }
        let mut shown = Vec::new();
        for (irq, aff) in &d.irqs {
            let cpus = aff.as_ref().ok().and_then(|a| cpu_list(a));
            let on_shards = cpus
                .as_ref()
                .is_some_and(|c| c.iter().any(|x| shard.contains(x)));
            if !spare.is_empty() && on_shards {
                status = Status::Warn;
                fix.push(*irq);
            }
            shown.push(match cpus {
                Some(c) => format!("{irq}→{}", format_cpus(&c)),
                None => format!("{irq}→?"),
            });
        }
        if shown.len() > IRQS_LISTED_MAX {
            parts.push(format!("{}: {} IRQs", d.label, shown.len()));
        } else {
            parts.push(format!("{}: {}", d.label, shown.join(",")));
        }
    }
    if devices.iter().all(|d| d.irqs.is_empty()) {
        status = Status::Unknown;
    }
    let mut c = c.found(status, parts.join("; "));
    for irq in fix {
        c = c.fix(
            format!("/proc/irq/{irq}/smp_affinity_list"),
            format_cpus(&spare),
        );
    }
    c
}

fn aio_max_nr(max: &Read, used: &Read) -> Check {
    let c = Check::new(
        "aio_max_nr",
        "the system-wide limit on Linux AIO contexts (Seastar/Redpanda need it raised); \
         shardlog uses io_uring, which does not count against it",
    )
    .recommend("any");
    match (max, used) {
        (Ok(m), Ok(u)) => c.found(Status::Ok, format!("{} (in use {})", m.trim(), u.trim())),
        (Ok(m), Err(_)) => c.found(Status::Ok, m.trim().to_string()),
        (Err(u), _) => c.unread(u),
    }
}

fn clocksource(current: &Read, available: &Read) -> Check {
    let c = Check::new(
        "clocksource",
        "the broker reads the clock for every request (latency histograms, timeouts, record \
         timestamps); tsc and kvm-clock are read in user space, hpet, acpi_pm and xen are \
         system calls",
    )
    .recommend("tsc (kvm-clock in a KVM guest, arch_sys_counter on arm64)");
    let cur = match current {
        Ok(v) => v.trim().to_string(),
        Err(u) => return c.unread(u),
    };
    if matches!(cur.as_str(), "tsc" | "kvm-clock" | "arch_sys_counter") {
        return c.found(Status::Ok, cur);
    }
    let offers_tsc = available
        .as_deref()
        .is_ok_and(|a| a.split_whitespace().any(|x| x == "tsc"));
    let c = c.found(Status::Warn, cur);
    if offers_tsc {
        c.fix(CLOCKSOURCE, "tsc")
    } else {
        c.manual("no fast clock source is offered (see available_clocksource)")
    }
}

fn numa(r: &Result<Vec<(usize, String)>, String>, shards: usize) -> Check {
    let c = Check::new(
        "numa",
        "shard i runs on core i and allocates where it runs; on several NUMA nodes a batch \
         produced on one node and served from another crosses the interconnect",
    )
    .recommend("1 node, or run one broker per node (--shards, taskset/numactl)")
    .manual("run one broker per NUMA node, each bound to its node's cores");
    let nodes = match r {
        Ok(n) => n,
        Err(e) => return c.found(Status::Unknown, format!("could not read: {e}")),
    };
    let listed: Vec<String> = nodes
        .iter()
        .map(|(n, cpus)| format!("node{n}: cpus {}", cpus.trim()))
        .collect();
    let found = format!("{} ({})", nodes.len(), listed.join("; "));
    let spans = nodes
        .iter()
        .filter(|(_, cpus)| {
            cpu_list(cpus).is_some_and(|set| set.iter().any(|c| *c < shards.max(1)))
        })
        .count();
    match nodes.len() {
        0 => c.found(Status::Unknown, "could not read: no node listed"),
        1 => c.found(Status::Ok, found),
        _ if spans <= 1 => c.found(Status::Ok, found),
        _ => c.found(Status::Warn, found),
    }
}

#[cfg(test)]
mod tests;
