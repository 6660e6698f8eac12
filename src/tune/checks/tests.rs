//! The checks against fixture text: the files as this machine (a KVM guest), a bare-metal NVMe
//! server and a container show them.

use std::path::Path;

use super::*;

fn found(v: &str) -> Read {
    Ok(v.to_string())
}

fn missing(path: &str) -> Read {
    Err(Unread {
        missing: true,
        reason: format!("{path}: No such file or directory (os error 2)"),
    })
}

fn denied(path: &str) -> Read {
    Err(Unread {
        missing: false,
        reason: format!("{path}: Permission denied (os error 13)"),
    })
}

const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
28 27 0:25 / /mnt/my\\040data ro,nosuid - xfs /dev/nvme0n1p1 rw
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24683772k
31 27 0:28 / /mnt/my\\040data/over rw - overlay overlay rw,lowerdir=/a
";

const INTERRUPTS: &str = "\
           CPU0       CPU1
 24:          1          0  IO-APIC   5-edge      ACPI:Ged
 35:          0          1 PCI-MSIX-0000:00:02.0   0-edge      virtio1-config
 36:          0    5600621 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 38:          0       2786 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
 39:       2487          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0
 44:          0          0 PCI-MSIX-0000:00:09.0   0-edge      virtio10-config
 50:         10          0 IR-PCI-MSI 524288-edge      nvme0q0
 51:         10          0 IR-PCI-MSI 524289-edge      nvme0q1
NMI:          0          0   Non-maskable interrupts
";

fn block(scheduler: &str, nr: &str, cache: &str, rot: &str) -> Block {
    Block {
        name: "vda".into(),
        sysfs: "/sys/block/vda".into(),
        scheduler: found(scheduler),
        nr_requests: found(nr),
        write_cache: found(cache),
        rotational: found(rot),
    }
}

/// This machine as `tune --check` saw it (a 2-core KVM guest, ext4 on virtio).
fn this_machine() -> Facts {
    Facts {
        shards: 2,
        cores: 2,
        kernel: found("6.18.44-fc-v1300\n"),
        io_uring_disabled: found("0\n"),
        io_uring_setup: Ok(()),
        memlock: Ok(Limit {
            soft: Some(8 << 20),
            hard: Some(8 << 20),
        }),
        nofile: Ok(Limit {
            soft: Some(20_000),
            hard: Some(20_000),
        }),
        nofile_needed: 13_024,
        data_dir: "/work/data".into(),
        mountinfo: found(MOUNTINFO),
        o_direct: Ok(()),
        block: Ok(block(
            "none [mq-deadline] kyber \n",
            "256\n",
            "write back\n",
            "1\n",
        )),
        governors: Ok(vec![
            (
                0,
                missing("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
                missing("x"),
            ),
            (
                1,
                missing("/sys/devices/system/cpu/cpu1/cpufreq/scaling_governor"),
                missing("x"),
            ),
        ]),
        thp: found("always [madvise] never\n"),
        swappiness: found("60\n"),
        aio: (found("65536\n"), found("0\n")),
        clocksource: (found("tsc\n"), found("tsc kvm-clock \n")),
        numa: Ok(vec![(0, "0-1\n".into())]),
        irqs: Ok(vec![
            DeviceIrqs {
                label: "vda".into(),
                irqs: vec![(35, found("0-1\n")), (36, found("1\n"))],
            },
            DeviceIrqs {
                label: "eth0".into(),
                irqs: vec![(38, found("0-1\n")), (39, found("0-1\n"))],
            },
        ]),
    }
}

fn by_name<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

#[test]
fn every_check_is_reported_once_in_order() {
    let checks = evaluate(&this_machine());
    let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "kernel",
            "io_uring_disabled",
            "io_uring_setup",
            "memlock",
            "nofile",
            "data_dir_fs",
            "o_direct",
            "scheduler",
            "nr_requests",
            "write_cache",
            "rotational",
            "cpu_governor",
            "transparent_hugepages",
            "swappiness",
            "irq_affinity",
            "aio_max_nr",
            "clocksource",
            "numa",
        ]
    );
    for c in &checks {
        assert!(!c.why.is_empty(), "{}", c.name);
        assert!(!c.found.is_empty(), "{}", c.name);
    }
}

#[test]
fn this_machine_as_found() {
    let checks = evaluate(&this_machine());
    let status = |n: &str| by_name(&checks, n).status;
    assert_eq!(status("kernel"), Status::Ok);
    assert_eq!(status("memlock"), Status::Ok);
    assert_eq!(status("nofile"), Status::Ok);
    assert_eq!(status("data_dir_fs"), Status::Ok);
    assert_eq!(
        by_name(&checks, "data_dir_fs").found,
        "ext4 on /dev/vda (mounted at /, for /work/data)"
    );
    // The virtio disk says it rotates, but the host schedules its I/O: none.
    let sched = by_name(&checks, "scheduler");
    assert_eq!(sched.status, Status::Warn);
    assert_eq!(sched.fix[0].value, "none");
    assert_eq!(
        sched.recommended,
        "none (a virtual disk: the host schedules)"
    );
    assert_eq!(status("rotational"), Status::Warn);
    assert_eq!(status("cpu_governor"), Status::Unknown);
    assert!(by_name(&checks, "cpu_governor")
        .found
        .starts_with("could not read: /sys/devices/system/cpu/cpu0/cpufreq"));
    let swap = by_name(&checks, "swappiness");
    assert_eq!((swap.status, swap.found.as_str()), (Status::Warn, "60"));
    assert_eq!(
        swap.fix,
        [Write {
            path: SWAPPINESS.into(),
            value: "1".into()
        }]
    );
    let irq = by_name(&checks, "irq_affinity");
    assert_eq!(irq.status, Status::Ok);
    assert_eq!(irq.found, "vda: 35→0-1,36→1; eth0: 38→0-1,39→0-1");
    assert_eq!(status("numa"), Status::Ok);
    assert_eq!(by_name(&checks, "aio_max_nr").found, "65536 (in use 0)");
}

#[test]
fn unreadable_settings_are_unknown_not_errors() {
    let mut f = this_machine();
    f.kernel = denied("/proc/sys/kernel/osrelease");
    f.thp = missing(THP_ENABLED);
    f.swappiness = denied(SWAPPINESS);
    f.block = Err("device 0:35 is not a block device".into());
    f.irqs = Err("/proc/interrupts: Permission denied".into());
    f.numa = Err("/sys/devices/system/node: No such file or directory".into());
    f.memlock = Err("getrlimit: EPERM".into());
    f.mountinfo = denied("/proc/self/mountinfo");
    f.clocksource = (missing(CLOCKSOURCE), missing("x"));
    f.aio = (denied("/proc/sys/fs/aio-max-nr"), denied("x"));
    let checks = evaluate(&f);
    for name in [
        "kernel",
        "transparent_hugepages",
        "swappiness",
        "scheduler",
        "nr_requests",
        "write_cache",
        "rotational",
        "irq_affinity",
        "numa",
        "memlock",
        "data_dir_fs",
        "clocksource",
        "aio_max_nr",
    ] {
        let c = by_name(&checks, name);
        assert_eq!(c.status, Status::Unknown, "{name}");
        assert!(
            c.found.starts_with("could not read: "),
            "{name}: {}",
            c.found
        );
        assert!(c.fix.is_empty(), "{name}");
    }
}

#[test]
fn io_uring_switch_and_probe() {
    let c = io_uring_disabled(&missing(IO_URING_DISABLED));
    assert_eq!(c.status, Status::Ok);
    assert!(c.found.starts_with("absent"));
    assert_eq!(io_uring_disabled(&found("1\n")).status, Status::Warn);
    let off = io_uring_disabled(&found("2\n"));
    assert_eq!(off.status, Status::Fail);
    assert_eq!(off.fix[0].value, "0");
    let refused = io_uring_setup(&Err("Operation not permitted (os error 1)".into()));
    assert_eq!(refused.status, Status::Fail);
    assert!(refused.manual.is_some());
}

#[test]
fn kernels_and_limits() {
    assert_eq!(kernel_version("5.15.0-91-generic"), Some((5, 15)));
    assert_eq!(kernel_version("6.1"), Some((6, 1)));
    assert_eq!(kernel_version("garbage"), None);
    assert_eq!(kernel(&found("5.10.0\n")).status, Status::Warn);
    assert_eq!(kernel(&found("4.19.0\n")).status, Status::Fail);
    let lim = |soft: Option<u64>| Ok(Limit { soft, hard: None });
    assert_eq!(memlock(&lim(None), 8).status, Status::Ok);
    assert_eq!(memlock(&lim(Some(64 << 10)), 1).status, Status::Fail);
    assert_eq!(memlock(&lim(Some(8 << 20)), 4).status, Status::Warn);
    assert_eq!(memlock(&lim(Some(16 << 20)), 4).status, Status::Ok);
    assert_eq!(
        memlock(&lim(Some(8 << 20)), 4).found,
        "8 MiB (hard unlimited)"
    );
    assert_eq!(nofile(&lim(Some(1024)), 13_024).status, Status::Warn);
    assert_eq!(nofile(&lim(None), 13_024).status, Status::Ok);
    assert_eq!(bytes(Some(512 << 10)), "512 KiB");
    assert_eq!(bytes(Some(3 << 30)), "3 GiB");
    assert_eq!(bytes(Some(1000)), "1000 bytes");
}

#[test]
fn mounts_pick_the_longest_prefix_and_unescape() {
    let m = mount_of(MOUNTINFO, Path::new("/mnt/my data/logs")).unwrap();
    assert_eq!(
        (m.fstype.as_str(), m.source.as_str()),
        ("xfs", "/dev/nvme0n1p1")
    );
    assert_eq!(m.point, Path::new("/mnt/my data"));
    let o = mount_of(MOUNTINFO, Path::new("/mnt/my data/over/x")).unwrap();
    assert_eq!(o.fstype, "overlay");
    // A prefix of the name is not a parent directory.
    let root = mount_of(MOUNTINFO, Path::new("/mnt/my data2")).unwrap();
    assert_eq!(root.fstype, "ext4");
    assert_eq!(mount_of("", Path::new("/x")), None);
    assert_eq!(mount_of("garbage line\n", Path::new("/x")), None);
    let shm = data_dir_fs(&found(MOUNTINFO), Path::new("/dev/shm/d"));
    assert_eq!(shm.status, Status::Fail);
    let over = data_dir_fs(&found(MOUNTINFO), Path::new("/mnt/my data/over"));
    assert_eq!(over.status, Status::Warn);
}

#[test]
fn disk_queue_settings() {
    assert_eq!(
        scheduler("none [mq-deadline] kyber \n"),
        Some((
            "mq-deadline".into(),
            vec!["none".into(), "mq-deadline".into(), "kyber".into()]
        ))
    );
    assert_eq!(scheduler("[none] \n").unwrap().0, "none");
    assert_eq!(scheduler("none mq-deadline"), None);
    let nvme = block("none [mq-deadline]", "1023", "write through", "0");
    let s = disk_scheduler(&nvme);
    assert_eq!(s.status, Status::Warn);
    assert_eq!(s.fix[0].path, Path::new("/sys/block/vda/queue/scheduler"));
    assert_eq!(s.fix[0].value, "none");
    let mut hdd = block("[none] kyber", "64", "write back", "1");
    hdd.name = "sda".into();
    let s = disk_scheduler(&hdd);
    assert_eq!(s.status, Status::Warn);
    assert!(
        s.fix.is_empty() && s.manual.is_some(),
        "mq-deadline is not on offer"
    );
    let n = nr_requests(&hdd);
    assert_eq!((n.status, n.fix[0].value.as_str()), (Status::Warn, "128"));
    assert_eq!(nr_requests(&nvme).status, Status::Ok);
    assert_eq!(write_cache(&nvme).status, Status::Ok);
    assert!(write_cache(&nvme).fix.is_empty());
    assert_eq!(rotational(&nvme).status, Status::Ok);
    let mut hdd_deadline = block("none [mq-deadline]", "64", "write back", "1");
    hdd_deadline.name = "sdb".into();
    assert_eq!(disk_scheduler(&hdd_deadline).status, Status::Ok);
    assert!(is_virtual_disk("vda") && is_virtual_disk("xvdb") && !is_virtual_disk("nvme0n1"));
    assert_eq!(
        write_cache(&block("[none]", "1", "bogus", "0")).status,
        Status::Unknown
    );
}

#[test]
fn governors_thp_swappiness_clock() {
    let govs = Ok(vec![
        (0, found("powersave\n"), found("performance powersave\n")),
        (1, found("performance\n"), found("performance powersave\n")),
        (2, found("schedutil\n"), found("schedutil\n")),
    ]);
    let g = cpu_governor(&govs);
    assert_eq!(g.status, Status::Warn);
    assert_eq!(g.found, "performance,powersave,schedutil");
    assert_eq!(g.fix.len(), 1, "cpu2 offers no performance governor");
    assert_eq!(
        g.fix[0].path,
        Path::new("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    );
    let all = Ok(vec![(0, found("performance\n"), found("performance\n"))]);
    assert_eq!(cpu_governor(&all).status, Status::Ok);
    assert_eq!(cpu_governor(&Ok(vec![])).status, Status::Unknown);
    assert_eq!(bracketed("always [madvise] never"), Some("madvise"));
    assert_eq!(bracketed("always madvise"), None);
    let never = transparent_hugepages(&found("always madvise [never]\n"));
    assert_eq!(
        (never.status, never.fix[0].value.as_str()),
        (Status::Warn, "madvise")
    );
    assert_eq!(swappiness(&found("1\n")).status, Status::Ok);
    assert_eq!(swappiness(&found("x\n")).status, Status::Unknown);
    let hpet = clocksource(&found("hpet\n"), &found("tsc hpet acpi_pm\n"));
    assert_eq!(
        (hpet.status, hpet.fix[0].value.as_str()),
        (Status::Warn, "tsc")
    );
    let xen = clocksource(&found("xen\n"), &found("xen\n"));
    assert!(xen.fix.is_empty() && xen.status == Status::Warn);
    assert_eq!(
        clocksource(&found("kvm-clock\n"), &found("kvm-clock tsc\n")).status,
        Status::Ok
    );
}

#[test]
fn cpu_lists_parse_and_print_bounded() {
    assert_eq!(
        cpu_list("0-2,5\n").unwrap().into_iter().collect::<Vec<_>>(),
        [0, 1, 2, 5]
    );
    assert_eq!(cpu_list("").unwrap().len(), 0);
    assert_eq!(cpu_list("3-1"), None);
    assert_eq!(cpu_list("0-4294967295"), None);
    assert_eq!(cpu_list("a"), None);
    let set: BTreeSet<usize> = [0, 1, 2, 5, 7, 8].into();
    assert_eq!(format_cpus(&set), "0-2,5,7-8");
    assert_eq!(format_cpus(&BTreeSet::new()), "");
}

#[test]
fn irqs_are_found_by_device_name_and_pci_address() {
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(irqs_named(INTERRUPTS, &keys(&["vda", "virtio1"])), [35, 36]);
    assert_eq!(irqs_named(INTERRUPTS, &keys(&["0000:00:03.0"])), [38, 39]);
    assert_eq!(
        irqs_named(INTERRUPTS, &keys(&["nvme0n1", "nvme0"])),
        [50, 51]
    );
    assert_eq!(
        irqs_named(INTERRUPTS, &keys(&["virtio"])),
        Vec::<u32>::new()
    );
    assert_eq!(irqs_named("", &keys(&["x"])), Vec::<u32>::new());
}

#[test]
fn irqs_on_shard_cores_move_when_cores_are_spare() {
    let devices = Ok(vec![DeviceIrqs {
        label: "nvme0n1".into(),
        irqs: vec![(50, found("0-3\n")), (51, found("3\n"))],
    }]);
    // Two shards on four cores: cores 2-3 are free for interrupts.
    let c = irq_affinity(&devices, 2, 4);
    assert_eq!(c.status, Status::Warn);
    assert_eq!(c.recommended, "cores 2-3 (no shard there)");
    assert_eq!(c.fix.len(), 1);
    assert_eq!(c.fix[0].path, Path::new("/proc/irq/50/smp_affinity_list"));
    assert_eq!(c.fix[0].value, "2-3");
    // A shard on every core: nothing to move.
    assert_eq!(irq_affinity(&devices, 4, 4).status, Status::Ok);
    let none = Ok(vec![DeviceIrqs {
        label: "vda".into(),
        irqs: vec![],
    }]);
    let c = irq_affinity(&none, 2, 2);
    assert_eq!(
        (c.status, c.found.as_str()),
        (Status::Unknown, "vda: no IRQ found")
    );
    let many = Ok(vec![DeviceIrqs {
        label: "nvme0n1".into(),
        irqs: (0..40).map(|i| (i, found("0"))).collect(),
    }]);
    assert_eq!(irq_affinity(&many, 1, 1).found, "nvme0n1: 40 IRQs");
}

#[test]
fn numa_nodes() {
    let two = Ok(vec![(0, "0-3".to_string()), (1, "4-7".to_string())]);
    assert_eq!(numa(&two, 4).status, Status::Ok, "the shards fit on node 0");
    assert_eq!(numa(&two, 8).status, Status::Warn);
    assert_eq!(numa(&Ok(vec![]), 1).status, Status::Unknown);
}

#[test]
fn mountinfo_escapes() {
    assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
    assert_eq!(unescape("tail\\04"), "tail\\04");
    assert_eq!(unescape("\\999"), "\\999");
}
