//! Capability sets: the bounding set (prctl), the ambient set and capget/capset (v3).

use nix::errno::Errno;

/// The effective, permitted and inheritable sets as 64-bit masks (bit n = capability n).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CapSets {
    pub(crate) effective: u64,
    pub(crate) permitted: u64,
    pub(crate) inheritable: u64,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub(crate) fn last_cap() -> Result<u32, Errno> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    text.trim().parse().map_err(|_| Errno::EINVAL)
}

/// Whether `cap` is in the calling thread's bounding set.
pub(crate) fn bounding_has(cap: u32) -> Result<bool, Errno> {
    // SAFETY: PR_CAPBSET_READ takes an integer argument and only reads kernel state.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
    match ret {
        r if r < 0 => Err(Errno::last()),
        r => Ok(r == 1),
    }
}

/// Removes `cap` from the calling thread's bounding set (needs CAP_SETPCAP).
pub(crate) fn bounding_drop(cap: u32) -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_DROP takes an integer argument; no memory is passed.
    let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// Empties the ambient set.
pub(crate) fn ambient_clear_all() -> Result<(), Errno> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes integer arguments only.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// The calling thread's capability sets.
pub(crate) fn capget() -> Result<CapSets, Errno> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: version 3 takes a header and an array of two data structs, both valid and
    // writable for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            std::ptr::addr_of_mut!(header),
            data.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// Sets the calling thread's capability sets (they may only shrink, see capset(2)).
pub(crate) fn capset(sets: CapSets) -> Result<(), Errno> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e0, e1) = split(sets.effective);
    let (p0, p1) = split(sets.permitted);
    let (i0, i1) = split(sets.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: version 3 takes a header and an array of two data structs, both valid for
    // the duration of the call; the kernel only reads the data.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::addr_of_mut!(header),
            data.as_ptr(),
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_capabilities() {
        let last = last_cap().unwrap();
        assert!(last >= 37, "kernel knows at least CAP_AUDIT_READ");
        let sets = capget().unwrap();
        // The effective set is always a subset of the permitted set.
        assert_eq!(sets.effective & !sets.permitted, 0);
        assert!(bounding_has(0).is_ok());
    }
}
