//! Who is on the other end of a loopback connection. The proxy's loopback
//! listeners (the browser sub-agent's, HTTP MCP servers') carry the
//! session's policy and its credential injection, so another user of the
//! machine must not borrow them: a connection is served only when the
//! socket at its far end belongs to the proxy's own user. Linux tells the
//! owner of every TCP socket in `/proc/net/tcp` and `/proc/net/tcp6`.

use std::net::SocketAddr;

/// The user id owning the client socket of an accepted loopback
/// connection: the row of `/proc/net/tcp{,6}` whose local address is
/// `peer` and whose remote address is `local` (the listener's address).
/// `None` when no such row can be read.
pub(crate) fn peer_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let table = match peer {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    find_uid(&text, &proc_addr(peer), &proc_addr(local))
}

/// This process's effective user id, from `/proc/self/status`.
pub(crate) fn own_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `addr` as the kernel prints it in `/proc/net/tcp`: the address's 32-bit
/// words in host byte order as hex, a colon, the port as hex.
fn proc_addr(addr: SocketAddr) -> String {
    let words: Vec<[u8; 4]> = match addr {
        SocketAddr::V4(a) => vec![a.ip().octets()],
        SocketAddr::V6(a) => a
            .ip()
            .octets()
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
    };
    let mut out: String = words
        .iter()
        .map(|w| format!("{:08X}", u32::from_ne_bytes(*w)))
        .collect();
    out.push_str(&format!(":{:04X}", addr.port()));
    out
}

fn find_uid(table: &str, local: &str, remote: &str) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_sl, l, r) = (fields.next()?, fields.next()?, fields.next()?);
        if !(l.eq_ignore_ascii_case(local) && r.eq_ignore_ascii_case(remote)) {
            return None;
        }
        // st tx:rx tr:when retrnsmt uid
        fields.nth(4)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn addresses_are_written_as_the_kernel_writes_them() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let expected = if cfg!(target_endian = "little") {
            "0100007F:1F90"
        } else {
            "7F000001:1F90"
        };
        assert_eq!(proc_addr(a), expected);
        let b: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!(proc_addr(b).len(), 32 + 5);
        assert!(proc_addr(b).ends_with(":01BB"));
    }

    #[test]
    fn the_row_of_the_connection_names_its_owner() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(
            find_uid(table, "0100007F:D431", "0100007F:1F90"),
            Some(1000)
        );
        assert_eq!(find_uid(table, "0100007F:D432", "0100007F:1F90"), None);
    }

    #[test]
    fn a_real_loopback_connection_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(local).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer_uid(peer, local), own_uid());
        assert!(own_uid().is_some());
    }
}
