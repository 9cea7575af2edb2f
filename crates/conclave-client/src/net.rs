//! Media sockets that tell when each datagram arrived.
//!
//! A participant reads its datagrams one after the other, and many
//! participants may share one CPU (the load generator runs hundreds). The
//! time a datagram is read then includes how long it waited for its reader.
//! On Linux the kernel stamps each datagram as it is received
//! (`SO_TIMESTAMPNS`), and [`recv_stamped`] returns that time as an
//! [`Instant`]; elsewhere it returns the time of reading. The kernel starts
//! stamping a moment after the first socket of the system asks for it;
//! datagrams received before are dated when they are read.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::UdpSocket;

/// Binds a UDP socket on `addr`, with a receive buffer of `recv_buffer`
/// bytes (capped by the kernel at `net.core.rmem_max`) and the kernel's
/// arrival time on every datagram.
pub async fn bind_stamped(addr: SocketAddr, recv_buffer: usize) -> io::Result<UdpSocket> {
    let sock = UdpSocket::bind(addr).await?;
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(recv_buffer);
    #[cfg(target_os = "linux")]
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::ReceiveTimestampns, &true)?;
    Ok(sock)
}

/// Reads one datagram into `buf`: its length, its source, and when it
/// arrived (the kernel's stamp on a socket from [`bind_stamped`], or now).
#[cfg(target_os = "linux")]
pub async fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Instant)> {
    use std::io::IoSliceMut;

    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    use nix::sys::time::TimeSpec;
    use tokio::io::Interest;

    let fd = std::os::fd::AsRawFd::as_raw_fd(sock);
    let (n, source, stamp) = sock
        .async_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let mut space = nix::cmsg_space!(TimeSpec);
            let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_DONTWAIT)
                .map_err(io::Error::from)?;
            let mut stamp = None;
            for c in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    stamp = Some(ts);
                }
            }
            let source = msg.address.as_ref().and_then(socket_addr);
            Ok((msg.bytes, source, stamp))
        })
        .await?;
    let source = source.ok_or_else(|| io::Error::other("a datagram without a source address"))?;
    let at = stamp.map_or_else(Instant::now, |ts| arrival(ts.tv_sec(), ts.tv_nsec()));
    Ok((n, source, at))
}

/// Reads one datagram into `buf`: its length, its source, and now.
#[cfg(not(target_os = "linux"))]
pub async fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Instant)> {
    let (n, source) = sock.recv_from(buf).await?;
    Ok((n, source, Instant::now()))
}

#[cfg(target_os = "linux")]
fn socket_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

/// The [`Instant`] of a wall-clock time (seconds and nanoseconds since the
/// Unix epoch, as the kernel stamps datagrams): how long ago it was by the
/// wall clock, taken from the monotonic clock's now. A time in the future
/// (the wall clock stepped back meanwhile) is now.
#[cfg(target_os = "linux")]
fn arrival(secs: i64, nanos: i64) -> Instant {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    let (Ok(secs), Ok(nanos)) = (u64::try_from(secs), u32::try_from(nanos)) else {
        return Instant::now();
    };
    let Some(stamp) = UNIX_EPOCH.checked_add(Duration::new(secs, nanos)) else {
        return Instant::now();
    };
    let wall = SystemTime::now();
    let mono = Instant::now();
    let ago = wall.duration_since(stamp).unwrap_or_default();
    mono.checked_sub(ago).unwrap_or(mono)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A datagram that waited in the socket is dated when it arrived, not
    /// when it was read. The kernel starts stamping arrivals a moment after
    /// the first socket asks (until then it dates datagrams as they are
    /// read), so a few tries are allowed.
    #[tokio::test]
    async fn a_datagram_is_dated_by_its_arrival() {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        let rx = bind_stamped(local, 1 << 16).await.expect("bind");
        let tx = UdpSocket::bind(local).await.expect("bind");
        let to = rx.local_addr().expect("address");
        let mut waited = Vec::new();
        for _ in 0..20 {
            let sent_before = Instant::now();
            tx.send_to(b"hello", to).await.expect("send");
            let sent_after = Instant::now();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut buf = [0u8; 64];
            let (n, from, at) = recv_stamped(&rx, &mut buf).await.expect("receive");
            let read = Instant::now();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(from, tx.local_addr().expect("address"));
            // The wall clock and the monotonic clock may disagree by a
            // little; the datagram waited 50 ms.
            let slack = Duration::from_millis(10);
            assert!(at + slack >= sent_before, "dated before it was sent");
            if read.duration_since(at) >= Duration::from_millis(40) {
                assert!(at <= sent_after + slack, "dated after it was sent");
                return;
            }
            waited.push(read.duration_since(at));
        }
        panic!("no datagram was dated by its arrival; each was dated {waited:?} before reading");
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn wall_clock_stamps_become_instants() {
        use std::time::{SystemTime, UNIX_EPOCH};

        let since =
            SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970") - Duration::from_secs(2);
        let at = arrival(since.as_secs() as i64, i64::from(since.subsec_nanos()));
        let ago = Instant::now().duration_since(at);
        assert!(
            ago >= Duration::from_millis(1_990) && ago < Duration::from_secs(3),
            "{ago:?}"
        );
        // Nonsense and the future are now.
        let now = Instant::now();
        assert!(arrival(-1, 0) >= now);
        assert!(arrival(i64::MAX, 999_999_999) >= now);
        assert!(arrival(i64::MAX / 2, 0) >= now);
    }
}
