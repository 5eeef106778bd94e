//! Capabilities and seccomp for container processes (init and exec'd commands).
//!
//! **Capabilities.** LXC keeps everything for unprivileged containers (its `userns.conf`
//! clears `lxc.cap.drop`): capabilities in a user namespace only act on objects that
//! namespace owns. We still drop LXC's `common.conf` list plus a few capabilities whose
//! objects are never namespaced (kernel modules, raw I/O, the clock, MAC policy, audit
//! control, the kernel log, wake alarms, suspend blocking, BPF, perf), so that a privileged
//! container is less dangerous and an unprivileged one loses nothing it could use. The drop
//! removes them from the bounding set (so no exec can regain them), the ambient set is
//! cleared and the effective/permitted sets shrink to what remains. CAP_SYS_RESOURCE is
//! never raised: the daemon's bounding set may lack it (it does on the development hosts).
//!
//! **seccomp.** A deny list returning EPERM (everything else allowed), for syscalls that
//! reach non-namespaced kernel state: module loading, kexec, the keyring, bpf, perf events,
//! userfaultfd, open_by_handle_at (the "shocker" breakout), raw port I/O, swap, the kernel
//! log, process accounting, and `umount2(MNT_FORCE)`. The native (x86_64) part is compiled
//! by seccompiler; its arch check kills any other ABI with SIGSYS, so on x86_64 we put an
//! i386 section with the same list in front of it (IA32 emulation is enabled on our hosts
//! and 32-bit programs must keep working). x32 numbers are denied in the native section.
//! The filter is installed with NO_NEW_PRIVS (seccompiler's `apply_filter` always sets it).

use std::collections::BTreeMap;

use nix::errno::Errno;
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule,
};

use super::super::protocol::WireError;
use crate::sys;

/// Capabilities removed from every container process, with their numbers.
pub const DROPPED_CAPS: [(u32, &str); 12] = [
    (16, "CAP_SYS_MODULE"),
    (17, "CAP_SYS_RAWIO"),
    (25, "CAP_SYS_TIME"),
    (30, "CAP_AUDIT_CONTROL"),
    (32, "CAP_MAC_OVERRIDE"),
    (33, "CAP_MAC_ADMIN"),
    (34, "CAP_SYSLOG"),
    (35, "CAP_WAKE_ALARM"),
    (36, "CAP_BLOCK_SUSPEND"),
    (37, "CAP_AUDIT_READ"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];

/// Bit mask of [`DROPPED_CAPS`].
pub(crate) fn dropped_mask() -> u64 {
    DROPPED_CAPS.iter().fold(0, |m, (c, _)| m | (1u64 << c))
}

/// Denied syscalls: name, x86_64 number, i386 number (if the syscall exists there).
pub const DENIED_SYSCALLS: [(&str, i64, Option<u32>); 25] = [
    ("acct", 163, Some(51)),
    ("add_key", 248, Some(286)),
    ("bpf", 321, Some(357)),
    ("create_module", 174, Some(127)),
    ("delete_module", 176, Some(129)),
    ("finit_module", 313, Some(350)),
    ("get_kernel_syms", 177, Some(130)),
    ("init_module", 175, Some(128)),
    ("ioperm", 173, Some(101)),
    ("iopl", 172, Some(110)),
    ("kexec_file_load", 320, None),
    ("kexec_load", 246, Some(283)),
    ("keyctl", 250, Some(288)),
    ("lookup_dcookie", 212, Some(253)),
    ("nfsservctl", 180, Some(169)),
    ("open_by_handle_at", 304, Some(342)),
    ("perf_event_open", 298, Some(336)),
    ("query_module", 178, Some(167)),
    ("request_key", 249, Some(287)),
    ("swapoff", 168, Some(115)),
    ("swapon", 167, Some(87)),
    ("syslog", 103, Some(103)),
    ("uselib", 134, Some(86)),
    ("userfaultfd", 323, Some(374)),
    ("vm86", -1, Some(166)),
];

/// `umount2`, denied only with MNT_FORCE.
const UMOUNT2: (i64, u32) = (166, 52);
const MNT_FORCE: u64 = 1;
/// Extra i386-only entries.
const I386_ONLY: [u32; 1] = [113]; // vm86old
const X32_BIT: i64 = 0x4000_0000;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// Low 32 bits of args[1] (little endian).
const OFFSET_ARG1_LO: u32 = 16 + 8;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// `SECCOMP_RET_ERRNO | EPERM`.
fn ret_eperm() -> u32 {
    libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32)
}

/// The native section, compiled by seccompiler (starts with its own arch check).
fn native_program() -> Result<BpfProgram, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr, _) in DENIED_SYSCALLS {
        if nr >= 0 {
            rules.insert(nr, vec![]);
            rules.insert(nr | X32_BIT, vec![]);
        }
    }
    let force = SeccompCondition::new(
        1,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(MNT_FORCE),
        MNT_FORCE,
    )?;
    rules.insert(UMOUNT2.0, vec![SeccompRule::new(vec![force.clone()])?]);
    rules.insert(UMOUNT2.0 | X32_BIT, vec![SeccompRule::new(vec![force])?]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH.try_into()?,
    )?;
    filter.try_into()
}

/// The i386 section: `nr == X -> EPERM`, umount2 with MNT_FORCE -> EPERM, else allow.
fn i386_section() -> Vec<sock_filter> {
    let mut nrs: Vec<u32> = DENIED_SYSCALLS.iter().filter_map(|(_, _, n)| *n).collect();
    nrs.extend(I386_ONLY);
    let mut prog = vec![stmt(BPF_LD_W_ABS, OFFSET_NR)];
    // Each check jumps over the rest of the list to the shared EPERM return at the end.
    let n = nrs.len();
    for (i, nr) in nrs.iter().enumerate() {
        let to_eperm = (n - i - 1) + 4; // remaining checks + umount2 block (4) before ret
        prog.push(jump(BPF_JEQ_K, *nr, to_eperm as u8, 0));
    }
    // umount2: if nr == 52 and (arg1 & MNT_FORCE) -> EPERM.
    prog.push(jump(BPF_JEQ_K, UMOUNT2.1, 0, 2));
    prog.push(stmt(BPF_LD_W_ABS, OFFSET_ARG1_LO));
    prog.push(jump(BPF_JSET_K, MNT_FORCE as u32, 1, 0));
    prog.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW));
    prog.push(stmt(BPF_RET_K, ret_eperm()));
    prog
}

/// The whole filter: arch dispatch, i386 section (x86_64 only), native section.
pub(crate) fn seccomp_program() -> Result<BpfProgram, WireError> {
    let native = native_program().map_err(|e| {
        WireError::new("compiling the seccomp filter", Errno::EINVAL, e.to_string())
    })?;
    if !cfg!(target_arch = "x86_64") {
        return Ok(native);
    }
    let i386 = i386_section();
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, OFFSET_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH_I386, 0, i386.len() as u8),
    ];
    prog.extend(i386);
    prog.extend(native);
    Ok(prog)
}

/// Drops [`DROPPED_CAPS`] from the bounding set, clears the ambient set and shrinks the
/// effective and permitted sets accordingly (inheritable becomes empty).
pub(crate) fn drop_capabilities() -> Result<(), WireError> {
    let fail = |step: &str, e: Errno| WireError::new(step, e, "");
    let last = sys::last_cap().map_err(|e| fail("reading cap_last_cap", e))?;
    for (cap, name) in DROPPED_CAPS {
        if cap > last {
            continue;
        }
        if sys::bounding_has(cap).map_err(|e| fail("reading the bounding set", e))? {
            sys::bounding_drop(cap)
                .map_err(|e| WireError::new("dropping a bounding capability", e, name))?;
        }
    }
    sys::ambient_clear_all().map_err(|e| fail("clearing ambient capabilities", e))?;
    let cur = sys::capget().map_err(|e| fail("capget", e))?;
    let keep = cur.permitted & !dropped_mask();
    sys::capset(sys::CapSets {
        effective: keep,
        permitted: keep,
        inheritable: 0,
    })
    .map_err(|e| fail("capset", e))
}

/// Installs `prog` on the calling thread (sets NO_NEW_PRIVS first).
pub(crate) fn apply_seccomp(prog: &BpfProgram) -> Result<(), WireError> {
    seccompiler::apply_filter(prog).map_err(|e| {
        let errno = match &e {
            seccompiler::Error::Seccomp(io) | seccompiler::Error::Prctl(io) => {
                Errno::from_raw(io.raw_os_error().unwrap_or(libc::EINVAL))
            }
            _ => Errno::EINVAL,
        };
        WireError::new("installing the seccomp filter", errno, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_numbers_match_libc() {
        let by_name: [(&str, libc::c_long); 8] = [
            ("kexec_load", libc::SYS_kexec_load),
            ("keyctl", libc::SYS_keyctl),
            ("bpf", libc::SYS_bpf),
            ("init_module", libc::SYS_init_module),
            ("open_by_handle_at", libc::SYS_open_by_handle_at),
            ("userfaultfd", libc::SYS_userfaultfd),
            ("perf_event_open", libc::SYS_perf_event_open),
            ("syslog", libc::SYS_syslog),
        ];
        #[cfg(target_arch = "x86_64")]
        for (name, nr) in by_name {
            let ours = DENIED_SYSCALLS.iter().find(|(n, _, _)| *n == name).unwrap();
            assert_eq!(ours.1, nr, "{name}");
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(UMOUNT2.0, libc::SYS_umount2);
        let _ = by_name;
    }

    #[test]
    fn program_shape() {
        let prog = seccomp_program().unwrap();
        assert!(
            prog.len() < 4096,
            "BPF programs are limited to 4096 instructions"
        );
        if cfg!(target_arch = "x86_64") {
            // The i386 jump lands exactly on the native section's first instruction.
            let skip = prog[1].jf as usize;
            let native = native_program().unwrap();
            assert_eq!(&prog[2 + skip..], &native[..]);
            // Every jump in the i386 section stays inside it.
            for (i, ins) in prog[2..2 + skip].iter().enumerate() {
                if ins.code == BPF_JEQ_K || ins.code == BPF_JSET_K {
                    assert!(
                        i + 1 + (ins.jt.max(ins.jf) as usize) < skip,
                        "jump {i} leaves"
                    );
                }
            }
            assert_eq!(prog[1 + skip].k, ret_eperm());
        }
    }

    #[test]
    fn dropped_caps_never_include_what_init_needs() {
        let mask = dropped_mask();
        for keep in [0u32, 1, 2, 5, 6, 7, 8, 12, 18, 19, 21, 22, 24] {
            // chown, dac_override, dac_read_search, kill, setgid, setuid, setpcap,
            // net_admin, sys_chroot, sys_ptrace, sys_admin, sys_boot, sys_resource
            assert_eq!(mask & (1 << keep), 0, "cap {keep} must be kept");
        }
        assert_eq!(mask.count_ones() as usize, DROPPED_CAPS.len());
    }
}
