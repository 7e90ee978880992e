//! The simulated VM's network: a network namespace of its own, holding only a loopback interface,
//! where one port — the local cloud's own port number — forwards to the local cloud.
//!
//! A Confidential Space VM reaches Google's APIs and nothing of its neighbours; the simulated one
//! must not share the host's network either. With the host's network every port the workload
//! opens — above all the Jupyter kernel's ZMQ ports, which carry cell outputs unencrypted on
//! 127.0.0.1 — would be open to every other user of the machine. In a namespace of its own the
//! workload's ports exist only inside it, and the one way out is the forwarder, which connects to
//! the local cloud and nowhere else. The workload keeps its `DCR_LOCAL_CLOUD` URL
//! (`http://127.0.0.1:PORT`): inside the namespace that address is the forwarder.
//!
//! The namespace is made by `unshare(CLONE_NEWNET)` on a thread of its own (namespaces belong to
//! threads, and that thread then ends), and kept alive by an open descriptor of it, which runc
//! joins through `/proc/PID/fd/N`. Nothing outlives the local cloud's process: when it exits, the
//! descriptor and the forwarder go with it, and the workload is cut off.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A VM's network namespace and its forwarder; dropping it stops the forwarder and every
/// connection through it.
pub struct VmNetwork {
    namespace: File,
    forwarder: tokio::task::JoinHandle<()>,
}

impl VmNetwork {
    /// A new namespace whose `127.0.0.1:PORT` (the port of `cloud`) forwards to `cloud`.
    pub async fn create(cloud: SocketAddr) -> Result<VmNetwork, String> {
        let (namespace, listener) = tokio::task::spawn_blocking(move || namespace_listening_on(cloud.port()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| {
                format!(
                    "cannot create the VM's network namespace: {e} (the local backend runs workloads as root, with \
                     runc; run terraform as root)"
                )
            })?;
        let listener = TcpListener::from_std(listener).map_err(|e| format!("cannot serve the VM's network: {e}"))?;
        let forwarder = tokio::spawn(forward(listener, cloud));
        Ok(VmNetwork { namespace, forwarder })
    }

    /// The path runc joins the namespace by.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.namespace.as_raw_fd()))
    }
}

impl Drop for VmNetwork {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

/// Accepts the workload's connections and joins each to a new connection to the local cloud.
/// The connections live in the forwarder's task set, so aborting the forwarder ends them all.
async fn forward(listener: TcpListener, cloud: SocketAddr) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(cloud).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// On a thread of its own: a new network namespace with loopback up and a listener on
/// `127.0.0.1:port` inside it, and a descriptor that keeps the namespace alive.
fn namespace_listening_on(port: u16) -> std::io::Result<(File, std::net::TcpListener)> {
    std::thread::spawn(move || {
        // SAFETY: unshare has no memory-safety preconditions; it moves only this thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        loopback_up()?;
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        listener.set_nonblocking(true)?;
        let namespace = File::open("/proc/thread-self/ns/net")?;
        Ok((namespace, listener))
    })
    .join()
    .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
}

/// `struct ifreq` as SIOCGIFFLAGS/SIOCSIFFLAGS use it: the name, then the flags in the union.
#[repr(C)]
struct InterfaceFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _rest: [u8; 22],
}

/// Brings `lo` up in the calling thread's network namespace (a new namespace starts with it down),
/// as `ip link set lo up` does, without needing iproute2.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain syscalls on a socket we own, with a request struct laid out as the kernel's.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let socket = OwnedFd::from_raw_fd(fd);
        let mut request = InterfaceFlags { name: [0; libc::IFNAMSIZ], flags: 0, _rest: [0; 22] };
        request.name[..2].copy_from_slice(b"lo");
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        request.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use tokio::io::AsyncWriteExt;

    /// Runs `f` on a thread that has joined the namespace at `path`.
    fn inside<T: Send + 'static>(path: PathBuf, f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            let ns = File::open(path).unwrap();
            // SAFETY: setns on a namespace descriptor we opened; it moves only this thread.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            f()
        })
        .join()
        .unwrap()
    }

    // Multi-threaded: `inside` blocks its caller while the forwarder must keep running.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_namespace_reaches_the_cloud_port_and_hides_its_own_ports() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: network namespaces need root");
            return;
        }
        let cloud = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = cloud.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = cloud.accept().await {
                let _ = s.write_all(b"cloud").await;
            }
        });
        let net = VmNetwork::create(addr).await.unwrap();

        // Inside: the cloud's own address answers, through the forwarder.
        let got = inside(net.path(), move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).unwrap();
            buf
        });
        assert_eq!(got, "cloud");

        // A port opened inside is not on the host's loopback.
        let (inner, port) = inside(net.path(), || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let p = l.local_addr().unwrap().port();
            (l, p)
        });
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the workload's port leaked to the host");
        drop(inner);

        // Another host port is not reachable from inside.
        let host_only = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = host_only.local_addr().unwrap();
        assert!(inside(net.path(), move || std::net::TcpStream::connect(other).is_err()));

        // Gone with the VM: the forwarder stops.
        let path = net.path();
        let ns = File::open(&path).unwrap();
        drop(net);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let refused = std::thread::spawn(move || {
            // SAFETY: as above.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            std::net::TcpStream::connect(addr).map(|mut s| {
                let mut b = Vec::new();
                let _ = s.read_to_end(&mut b);
                b
            })
        })
        .join()
        .unwrap();
        assert!(refused.is_err(), "the forwarder outlived its VM");
    }
}
