//! Pseudo-terminals for commands that run on one ([`ExecRequest::pty`]): opening the
//! pair, sizing it, and moving bytes through the master without ever blocking the agent.
//!
//! The master stays in the agent, non-blocking and polled by the runtime ([`AsyncFd`]):
//! a terminal flooding output is read in chunks and waits, like a pipe, for the outbox,
//! never holding a thread. The slave becomes the command's controlling terminal and
//! stdio (see `process::prepare_child`).
//!
//! [`ExecRequest::pty`]: crate::protocol::ExecRequest::pty

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use crate::agent::sys::FsIdentity;
use crate::protocol::PtySize;

/// The EOF character of a terminal whose settings cannot be read (`^D`).
const DEFAULT_EOF: u8 = 0x04;

/// The agent's end of a pseudo-terminal (the master).
pub(crate) struct Pty {
    master: AsyncFd<OwnedFd>,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Pty {
    /// Opens a pseudo-terminal of `size`; returns the master and the slave (both
    /// close-on-exec). The slave belongs to `user` (devpts gives it the file-system uid
    /// of whoever opens the master), so the command can reopen it by name (`tty`, `ssh`,
    /// `gpg` do) without the agent needing `CAP_CHOWN`.
    pub(crate) fn open(size: PtySize, user: Option<(u32, u32)>) -> io::Result<(Arc<Pty>, OwnedFd)> {
        let identity = FsIdentity::assume(user);
        // SAFETY: a plain open of /dev/ptmx; the descriptor is ours alone.
        let master = unsafe {
            OwnedFd::from_raw_fd(check(libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC))?)
        };
        drop(identity);
        // devpts sets the slave's owner and mode at open: `grantpt` has nothing to do on
        // Linux (and glibc's may look up the `tty` group, which a static binary avoids).
        // SAFETY: a valid descriptor.
        check(unsafe { libc::unlockpt(master.as_raw_fd()) })?;
        // The slave of this very master (Linux 4.13), not a path that could name another.
        let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
        // SAFETY: a valid descriptor; TIOCGPTPEER takes the open flags as its argument.
        let slave = unsafe { OwnedFd::from_raw_fd(check(libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags))?) };
        set_size(&master, size)?;
        // SAFETY: fcntl on a valid descriptor.
        let status = check(unsafe { libc::fcntl(master.as_raw_fd(), libc::F_GETFL) })?;
        // SAFETY: as above.
        check(unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, status | libc::O_NONBLOCK) })?;
        // SAFETY: the `OwnedFd` moves into the `AsyncFd` and stays open, the same
        // descriptor, until it is dropped.
        let master = unsafe { AsyncFd::register_with_interest(master, Interest::READABLE | Interest::WRITABLE) }?;
        Ok((Arc::new(Pty { master }), slave))
    }

    /// Sets the terminal's size; the kernel sends `SIGWINCH` to its foreground group.
    pub(crate) fn resize(&self, size: PtySize) {
        if let Err(e) = set_size(self.master.get_ref(), size) {
            tracing::warn!("cannot resize a terminal: {e}");
        }
    }

    /// The terminal's EOF character as its settings say now (`stty eof`), else `^D`.
    pub(crate) fn eof_char(&self) -> u8 {
        // SAFETY: termios is a plain C struct for which all-zero is valid.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and out-pointer; on a master it reads the slave's.
        match unsafe { libc::tcgetattr(self.master.get_ref().as_raw_fd(), &mut termios) } {
            0 => termios.c_cc[libc::VEOF],
            _ => DEFAULT_EOF,
        }
    }
}

fn set_size(master: &OwnedFd, size: PtySize) -> io::Result<()> {
    let winsize = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: a valid descriptor and a pointer to a winsize that outlives the call.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &winsize as *const libc::winsize) }).map(drop)
}

/// What the command writes to its terminal. Ends (reads 0 bytes) once every slave
/// descriptor is closed: the kernel answers `EIO` then, which is no failure here.
pub(crate) struct PtyReader(pub(crate) Arc<Pty>);

impl AsyncRead for PtyReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.master.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let read = guard.try_io(|master| {
                // SAFETY: a valid descriptor and a writable buffer of that length.
                let n = unsafe { libc::read(master.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len()) };
                usize::try_from(n).map_err(|_| io::Error::last_os_error())
            });
            match read {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// What is typed into the command's terminal.
pub(crate) struct PtyWriter(pub(crate) Arc<Pty>);

impl AsyncWrite for PtyWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.master.poll_write_ready(cx))?;
            let written = guard.try_io(|master| {
                // SAFETY: a valid descriptor and a readable buffer of that length.
                let n = unsafe { libc::write(master.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
                usize::try_from(n).map_err(|_| io::Error::last_os_error())
            });
            if let Ok(result) = written {
                return Poll::Ready(result);
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
