//! Who is on the other end of a loopback connection. The proxy's loopback
//! listeners (the browser sub-agent's, HTTP MCP servers') carry the
//! session's policy and its credential injection, so another user of the
//! machine must not borrow them: a connection is served only when the
//! socket at its far end belongs to the proxy's own user.
//!
//! Linux answers "who owns the TCP socket with this address pair" exactly,
//! through a `sock_diag` netlink request (what `ss` uses): one round trip of
//! a few microseconds, however many sockets the machine has. (Scanning
//! `/proc/net/tcp` instead cost milliseconds per connection once a few
//! thousand sockets sat in TIME_WAIT.) Elsewhere there is no such check.

use std::net::SocketAddr;

/// The user id owning the client socket of an accepted loopback
/// connection: the socket whose own address is `peer` and whose remote
/// address is `local` (the listener's). `None` when the kernel cannot say.
#[cfg(target_os = "linux")]
pub(crate) fn peer_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    diag::socket_uid(peer, local)
}

/// Without `sock_diag` every connection is served.
#[cfg(not(target_os = "linux"))]
pub(crate) fn peer_uid(_peer: SocketAddr, _local: SocketAddr) -> Option<u32> {
    own_uid()
}

/// This process's effective user id.
#[cfg(target_os = "linux")]
pub(crate) fn own_uid() -> Option<u32> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    Some(unsafe { libc::geteuid() })
}

/// Without `sock_diag` there is nothing to compare.
#[cfg(not(target_os = "linux"))]
pub(crate) fn own_uid() -> Option<u32> {
    Some(0)
}

#[cfg(target_os = "linux")]
mod diag {
    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

    /// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    /// Size of `struct nlmsghdr`.
    const NLMSG_HDR: usize = 16;
    /// Size of `struct inet_diag_req_v2`.
    const REQ_LEN: usize = 56;
    /// Offset of `idiag_uid` in `struct inet_diag_msg`: family, state,
    /// timer, retrans (4), the socket id (48), expires, rqueue, wqueue (12).
    const UID_OFFSET: usize = 64;

    /// The request: a `nlmsghdr` and an `inet_diag_req_v2` naming one TCP
    /// socket by its address pair (big-endian ports and addresses, as the
    /// kernel keeps them), in any state, without a cookie.
    pub(super) fn request(own: SocketAddr, remote: SocketAddr) -> Vec<u8> {
        let family = match own.ip() {
            IpAddr::V4(_) => libc::AF_INET as u8,
            IpAddr::V6(_) => libc::AF_INET6 as u8,
        };
        let addr = |a: SocketAddr| -> [u8; 16] {
            let mut out = [0u8; 16];
            match a.ip() {
                IpAddr::V4(ip) => out[..4].copy_from_slice(&ip.octets()),
                IpAddr::V6(ip) => out.copy_from_slice(&ip.octets()),
            }
            out
        };
        let len = NLMSG_HDR + REQ_LEN;
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        m.push(family);
        m.push(libc::IPPROTO_TCP as u8);
        m.push(0); // no extensions
        m.push(0);
        m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
        m.extend_from_slice(&own.port().to_be_bytes());
        m.extend_from_slice(&remote.port().to_be_bytes());
        m.extend_from_slice(&addr(own));
        m.extend_from_slice(&addr(remote));
        m.extend_from_slice(&0u32.to_ne_bytes()); // any interface
        m.extend_from_slice(&u32::MAX.to_ne_bytes()); // INET_DIAG_NOCOOKIE
        m.extend_from_slice(&u32::MAX.to_ne_bytes());
        debug_assert_eq!(m.len(), len);
        m
    }

    /// The uid in the kernel's answer, when it is an `inet_diag_msg` and not
    /// an error (no such socket).
    pub(super) fn uid_in(answer: &[u8]) -> Option<u32> {
        let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
        if kind != SOCK_DIAG_BY_FAMILY {
            return None;
        }
        let at = NLMSG_HDR + UID_OFFSET;
        Some(u32::from_ne_bytes(answer.get(at..at + 4)?.try_into().ok()?))
    }

    pub(super) fn socket_uid(own: SocketAddr, remote: SocketAddr) -> Option<u32> {
        // SAFETY: socket(2) with constant arguments; the descriptor is
        // owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let msg = request(own, remote);
        // SAFETY: an all-zero sockaddr_nl is valid; pid 0 is the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: msg and kernel outlive the call; the lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                std::ptr::from_ref(&kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return None;
        }
        let mut buf = [0u8; 1024];
        // SAFETY: buf outlives the call and its length is given.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let n = usize::try_from(n).ok()?;
        uid_in(&buf[..n])
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_request_has_the_layout_the_kernel_reads() {
        let own: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        let remote: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let m = diag::request(own, remote);
        assert_eq!(m.len(), 72);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 72);
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(m[17], libc::IPPROTO_TCP as u8);
        assert_eq!(&m[24..26], &54321u16.to_be_bytes());
        assert_eq!(&m[26..28], &8080u16.to_be_bytes());
        assert_eq!(&m[28..32], &[127, 0, 0, 1]);
        assert_eq!(&m[44..48], &[127, 0, 0, 1]);
        // An error answer (no such socket) names nobody.
        let mut err = vec![0u8; 36];
        err[4..6].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(diag::uid_in(&err), None);
    }

    #[test]
    fn a_real_loopback_connection_is_ours_and_a_closed_one_is_nobodys() {
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = std::net::TcpListener::bind(bind) else {
                continue; // no IPv6 loopback here
            };
            let local = listener.local_addr().unwrap();
            let client = std::net::TcpStream::connect(local).unwrap();
            let (_server, peer) = listener.accept().unwrap();
            assert_eq!(peer_uid(peer, local), own_uid(), "{bind}");
            assert!(own_uid().is_some());
            let wrong = SocketAddr::new(local.ip(), 1);
            assert_eq!(peer_uid(wrong, local), None, "{bind}");
            drop(client);
        }
    }
}
