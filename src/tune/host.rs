//! The edge of `shardlog tune`: reads /proc and /sys, asks for resource limits, tries an
//! io_uring_setup and an O_DIRECT write, and (only for `--apply`) writes procfs and sysfs
//! files. Every read failure becomes a value ([`Unread`] or an error string) for the pure
//! checks in [`super::checks`] to report; nothing here panics or gives up on the whole run.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::checks::{self, Block, DeviceIrqs, Facts, Limit, Read, Unread};

/// The largest procfs or sysfs file we read (/proc/interrupts on a big machine is ~100 KiB).
const READ_BYTES_MAX: u64 = 4 << 20;
/// The most CPUs, NUMA nodes or NICs we look at.
const ENTRIES_MAX: usize = 4096;
/// The O_DIRECT probe's block.
const PROBE_BYTES: usize = 4096;

/// What the host checks need to know about the broker that will run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The data directory (need not exist yet).
    pub data_dir: PathBuf,
    /// Shards the broker will run.
    pub shards: usize,
    /// Cores online.
    pub cores: usize,
    /// Open files the broker may need.
    pub nofile_needed: u64,
}

/// Reads a procfs or sysfs file (bounded), trailing newline and all.
pub fn read(path: impl AsRef<Path>) -> Read {
    use std::io::Read as _;
    let path = path.as_ref();
    let unread = |e: io::Error| Unread {
        missing: e.kind() == io::ErrorKind::NotFound,
        reason: format!("{}: {e}", path.display()),
    };
    let f = fs::File::open(path).map_err(unread)?;
    let mut s = String::new();
    f.take(READ_BYTES_MAX)
        .read_to_string(&mut s)
        .map_err(unread)?;
    Ok(s)
}

/// Everything the checks look at.
pub fn gather(plan: &Plan) -> Facts {
    let (dir, _) = existing_dir(&plan.data_dir);
    let block = block_device(&dir);
    Facts {
        shards: plan.shards,
        cores: plan.cores,
        kernel: read("/proc/sys/kernel/osrelease"),
        io_uring_disabled: read(checks::IO_URING_DISABLED),
        io_uring_setup: probe_io_uring(),
        memlock: limit(libc::RLIMIT_MEMLOCK),
        nofile: limit(libc::RLIMIT_NOFILE),
        nofile_needed: plan.nofile_needed,
        mountinfo: read("/proc/self/mountinfo"),
        o_direct: probe_o_direct(&dir),
        irqs: irqs(block.as_ref().ok()),
        block,
        data_dir: dir,
        governors: governors(),
        thp: read(checks::THP_ENABLED),
        swappiness: read(checks::SWAPPINESS),
        aio: (read("/proc/sys/fs/aio-max-nr"), read("/proc/sys/fs/aio-nr")),
        clocksource: (
            read(checks::CLOCKSOURCE),
            read("/sys/devices/system/clocksource/clocksource0/available_clocksource"),
        ),
        numa: numa(),
    }
}

/// The data dir made absolute, or its nearest existing ancestor when it does not exist yet
/// (where the broker would create it); the flag says whether it existed.
pub fn existing_dir(dir: &Path) -> (PathBuf, bool) {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut at = abs.as_path();
    loop {
        if let Ok(c) = fs::canonicalize(at) {
            if c.is_dir() {
                return (c, at == abs.as_path());
            }
        }
        match at.parent() {
            Some(p) => at = p,
            None => return (PathBuf::from("/"), false),
        }
    }
}

fn limit(resource: libc::__rlimit_resource_t) -> Result<Limit, String> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the rlimit struct we pass, which lives on our stack.
    let rc = unsafe { libc::getrlimit(resource, &mut l) };
    if rc != 0 {
        return Err(format!("getrlimit: {}", io::Error::last_os_error()));
    }
    let v = |x: libc::rlim_t| (x != libc::RLIM_INFINITY).then_some(x);
    Ok(Limit {
        soft: v(l.rlim_cur),
        hard: v(l.rlim_max),
    })
}

/// Sets up a 4-entry io_uring and closes it.
fn probe_io_uring() -> Result<(), String> {
    // struct io_uring_params is 120 bytes; all zero asks for the defaults.
    let mut params = [0u32; 30];
    // SAFETY: io_uring_setup reads and writes only the params buffer, which is large enough
    // for the kernel's struct io_uring_params; the returned descriptor is ours to close.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(io::Error::last_os_error().to_string());
    }
    // SAFETY: fd was just returned to us and is not used after this.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// Writes one aligned block with O_DIRECT into a probe file in `dir`, then removes it.
fn probe_o_direct(dir: &Path) -> Result<(), String> {
    let path = dir.join(format!(".shardlog-tune-probe-{}", std::process::id()));
    let result = write_direct(&path);
    let _ = fs::remove_file(&path);
    result.map_err(|e| e.to_string())
}

fn write_direct(path: &Path) -> io::Result<()> {
    use std::io::Write as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    // An aligned block inside a buffer twice its size.
    let buf = vec![0u8; 2 * PROBE_BYTES];
    let skip = buf.as_ptr().align_offset(PROBE_BYTES).min(PROBE_BYTES);
    f.write_all(&buf[skip..skip + PROBE_BYTES])
}

/// The whole disk under `dir`'s file system, from its device number.
fn block_device(dir: &Path) -> Result<Block, String> {
    let dev = fs::metadata(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    if major == 0 {
        return Err(format!(
            "device {major}:{minor} is not a block device (tmpfs, overlay, a network or FUSE \
             file system): no disk queue to tune"
        ));
    }
    let link = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let mut sysfs = fs::canonicalize(&link).map_err(|e| format!("{}: {e}", link.display()))?;
    if sysfs.join("partition").exists() {
        sysfs = sysfs.parent().map(Path::to_path_buf).unwrap_or(sysfs);
    }
    let name = sysfs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !sysfs.join("queue").is_dir() {
        return Err(format!(
            "{name} ({major}:{minor}) has no queue in sysfs (a device-mapper or md device: \
             check the disks under it)"
        ));
    }
    let q = |f: &str| read(sysfs.join("queue").join(f));
    Ok(Block {
        scheduler: q("scheduler"),
        nr_requests: q("nr_requests"),
        write_cache: q("write_cache"),
        rotational: q("rotational"),
        name,
        sysfs,
    })
}

/// The names a device's IRQs may carry: the device's own sysfs name (`virtio1`, `nvme0`) and
/// its PCI address, found by following its `device` link.
fn device_keys(device_link: &Path, extra: &str) -> Vec<String> {
    let mut keys = vec![extra.to_string()];
    let Ok(real) = fs::canonicalize(device_link) else {
        return keys;
    };
    if let Some(n) = real.file_name() {
        keys.push(n.to_string_lossy().into_owned());
    }
    let pci = real.ancestors().filter_map(|a| a.file_name()).find(|n| {
        let n = n.to_string_lossy();
        n.len() == 12 && n.as_bytes()[4] == b':' && n.as_bytes()[7] == b':'
    });
    if let Some(p) = pci {
        keys.push(p.to_string_lossy().into_owned());
    }
    keys
}

/// The data disk's and the physical NICs' IRQs with their affinity.
fn irqs(block: Option<&Block>) -> Result<Vec<DeviceIrqs>, String> {
    let interrupts = read("/proc/interrupts").map_err(|u| u.reason)?;
    let mut devices: Vec<(String, Vec<String>)> = Vec::new();
    if let Some(b) = block {
        devices.push((
            b.name.clone(),
            device_keys(&b.sysfs.join("device"), &b.name),
        ));
    }
    let nics = fs::read_dir("/sys/class/net").map_err(|e| format!("/sys/class/net: {e}"))?;
    let mut nics: Vec<PathBuf> = nics.flatten().map(|e| e.path()).take(ENTRIES_MAX).collect();
    nics.sort();
    for nic in nics {
        let name = nic.file_name().map(|n| n.to_string_lossy().into_owned());
        // Only NICs with hardware under them (no lo, bridges, veths, ifb).
        if let (Some(name), true) = (name, nic.join("device").exists()) {
            let keys = device_keys(&nic.join("device"), &name);
            devices.push((name, keys));
        }
    }
    Ok(devices
        .into_iter()
        .map(|(label, keys)| DeviceIrqs {
            label,
            irqs: checks::irqs_named(&interrupts, &keys)
                .into_iter()
                .map(|irq| (irq, read(format!("/proc/irq/{irq}/smp_affinity_list"))))
                .collect(),
        })
        .collect())
}

/// Numbered entries `prefixN` of a sysfs directory, sorted by N.
fn numbered(dir: &str, prefix: &str) -> Result<Vec<usize>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{dir}: {e}"))?;
    let mut out: Vec<usize> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix(prefix)?.parse().ok())
        .take(ENTRIES_MAX)
        .collect();
    out.sort_unstable();
    Ok(out)
}

fn governors() -> Result<Vec<(usize, Read, Read)>, String> {
    let cpus = numbered("/sys/devices/system/cpu", "cpu")?;
    Ok(cpus
        .into_iter()
        .map(|n| {
            let base = format!("/sys/devices/system/cpu/cpu{n}/cpufreq");
            (
                n,
                read(format!("{base}/scaling_governor")),
                read(format!("{base}/scaling_available_governors")),
            )
        })
        .collect())
}

fn numa() -> Result<Vec<(usize, String)>, String> {
    let nodes = numbered("/sys/devices/system/node", "node")?;
    nodes
        .into_iter()
        .map(|n| {
            read(format!("/sys/devices/system/node/node{n}/cpulist"))
                .map(|c| (n, c))
                .map_err(|u| u.reason)
        })
        .collect()
}

/// Writes `value` into a procfs or sysfs file.
pub fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value)
}
