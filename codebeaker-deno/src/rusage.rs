//! What a command cost, from `getrusage(2)`.

/// The kernel's accounting of `who` (`RUSAGE_SELF`, `RUSAGE_THREAD`).
pub(crate) fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage fills the zeroed struct we own.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    }
}

/// User plus system CPU time of `who`, in ms.
pub(crate) fn cpu_ms(who: libc::c_int) -> u64 {
    let usage = rusage(who);
    let ms = |t: libc::timeval| {
        u64::try_from(t.tv_sec)
            .unwrap_or(0)
            .saturating_mul(1000)
            .saturating_add(u64::try_from(t.tv_usec).unwrap_or(0) / 1000)
    };
    ms(usage.ru_utime).saturating_add(ms(usage.ru_stime))
}

/// Peak resident memory of this process, in KiB.
pub(crate) fn peak_rss_kb() -> u64 {
    u64::try_from(rusage(libc::RUSAGE_SELF).ru_maxrss).unwrap_or(0)
}
