//! Debian's docker-registry (distribution 2.8) on a loopback port, storing in a scratch directory:
//! the real OCI registry image tests push to and workloads pull from.

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Registry {
    pub fn start(dir: &Path) -> Registry {
        Self::start_with(dir, None)
    }

    /// A registry that lets only `user` with `password` in (htpasswd basic auth, a bcrypt hash made
    /// with Python's crypt module, which glibc's libxcrypt backs).
    pub fn start_with_login(dir: &Path, user: &str, password: &str) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("python3")
            .args([
                "-W",
                "ignore",
                "-c",
                "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
            ])
            .arg(password)
            .output()
            .expect("python3 hashes the password");
        let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(hash.starts_with("$2"), "no bcrypt hash: {hash:?} {}", String::from_utf8_lossy(&out.stderr));
        let file = dir.join("htpasswd");
        std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
        Self::start_with(dir, Some(&file))
    }

    fn start_with(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(bin.is_file(), "docker-registry is not installed: run tests/install-tools.sh");
        std::fs::create_dir_all(dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{}",
                dir.join("data").display(),
                htpasswd
                    .map(|f| format!("auth:\n  htpasswd:\n    realm: dcr-test\n    path: {}\n", f.display()))
                    .unwrap_or_default()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let registry = Registry { child, addr };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(std::time::Instant::now() < deadline, "docker-registry did not listen on {}", registry.addr);
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
