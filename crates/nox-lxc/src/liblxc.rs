//! The safe face of liblxc. Only this module touches `lxc_sys`.
//!
//! - Refcounting: a [`Container`] owns one reference (`lxc_container_new`) and drops it with
//!   `lxc_container_put`.
//! - Strings: every `CString` handed to liblxc lives until the call returns.
//! - Function pointers: `struct lxc_container` is a table of optional C function pointers; a
//!   missing one is an error, never a null call.
//! - Errors: liblxc's return values say nothing ("false"), so each container logs to a file in
//!   its directory, and errors carry the last lines liblxc wrote there.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};

use lxc_sys::lxc_container;

/// liblxc's version string, e.g. `5.0.2`.
pub fn version() -> String {
    // SAFETY: lxc_get_version returns a pointer to a static, NUL-terminated string owned by
    // liblxc (or NULL in a broken build, which we check).
    let ptr = unsafe { lxc_sys::lxc_get_version() };
    if ptr.is_null() {
        return "unknown".into();
    }
    // SAFETY: non-null and NUL-terminated as above; copied out immediately.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

#[derive(Debug, thiserror::Error)]
#[error("{op} failed for container {name}: {detail}")]
pub struct LxcError {
    pub op: &'static str,
    pub name: String,
    /// liblxc's own words: its error string and the last lines of the container's log.
    pub detail: String,
}

/// The log file nox points liblxc at, inside the container's directory.
pub const LOG_FILE: &str = "nox-lxc.log";

/// One reference to a liblxc container object.
#[derive(Debug)]
pub struct Container {
    ptr: NonNull<lxc_container>,
    name: String,
    lxcpath: PathBuf,
}

// liblxc container objects carry their own locks; nox moves them between threads but never
// uses one from two threads at once (Container is not Sync).
unsafe impl Send for Container {}

/// A string for liblxc. Names are validated and config files refuse NUL characters before
/// anything gets here, but a path or value from the host (a directory name, a record) still
/// could hold one: that is an error naming the operation, never a panic.
fn cstring(s: &str, op: &'static str, name: &str) -> Result<CString, LxcError> {
    CString::new(s).map_err(|_| LxcError {
        op,
        name: name.into(),
        detail: format!("{s:?} holds a NUL byte, which liblxc cannot take"),
    })
}

/// Calls an optional function pointer of `struct lxc_container`, or fails naming it.
macro_rules! lxc_call {
    ($self:ident, $field:ident, $op:literal $(, $arg:expr)*) => {{
        // SAFETY: ptr is a live container (we hold a reference).
        let f = unsafe { $self.ptr.as_ref().$field };
        match f {
            Some(f) => {
                let started = std::time::Instant::now();
                // SAFETY: liblxc filled this pointer; arguments are valid for the call's
                // duration.
                let r = unsafe { f($self.ptr.as_ptr() $(, $arg)*) };
                tracing::debug!(container = %$self.name, took = ?started.elapsed(), "liblxc {}", $op);
                Ok(r)
            }
            None => Err($self.error($op, "liblxc lacks this operation")),
        }
    }};
}

impl Container {
    /// Gets a handle on container `name` in `lxcpath`, whether or not it exists yet.
    pub fn new(name: &str, lxcpath: &Path) -> Result<Self, LxcError> {
        let op = "lxc_container_new";
        let cname = cstring(name, op, name)?;
        let cpath = cstring(&lxcpath.to_string_lossy(), op, name)?;
        // SAFETY: both strings outlive the call; liblxc copies them.
        let ptr = unsafe { lxc_sys::lxc_container_new(cname.as_ptr(), cpath.as_ptr()) };
        let ptr = NonNull::new(ptr).ok_or_else(|| LxcError {
            op: "lxc_container_new",
            name: name.into(),
            detail: format!(
                "liblxc could not allocate a container in {}",
                lxcpath.display()
            ),
        })?;
        Ok(Container {
            ptr,
            name: name.into(),
            lxcpath: lxcpath.to_path_buf(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn c(&self, s: &str, op: &'static str) -> Result<CString, LxcError> {
        cstring(s, op, &self.name)
    }

    fn c_all(&self, strings: &[&str], op: &'static str) -> Result<Vec<CString>, LxcError> {
        strings.iter().map(|s| self.c(s, op)).collect()
    }

    pub fn dir(&self) -> PathBuf {
        self.lxcpath.join(&self.name)
    }

    fn error(&self, op: &'static str, fallback: &str) -> LxcError {
        // SAFETY: error_string is NULL or a NUL-terminated string owned by the container.
        let own = unsafe {
            let s = self.ptr.as_ref().error_string;
            (!s.is_null()).then(|| CStr::from_ptr(s).to_string_lossy().into_owned())
        };
        let log = log_tail(&self.dir().join(LOG_FILE), 5);
        let mut detail = own.unwrap_or_else(|| fallback.to_string());
        if !log.is_empty() {
            detail = format!("{detail}; liblxc log: {}", log.join(" | "));
        }
        LxcError {
            op,
            name: self.name.clone(),
            detail,
        }
    }

    fn check(&self, ok: bool, op: &'static str) -> Result<(), LxcError> {
        if ok {
            Ok(())
        } else {
            Err(self.error(op, "liblxc reported failure"))
        }
    }

    pub fn is_defined(&self) -> bool {
        lxc_call!(self, is_defined, "is_defined").unwrap_or(false)
    }

    pub fn is_running(&self) -> bool {
        lxc_call!(self, is_running, "is_running").unwrap_or(false)
    }

    /// `RUNNING`, `STOPPED`, `FROZEN`, ...
    pub fn state(&self) -> String {
        match lxc_call!(self, state, "state") {
            // SAFETY: state returns a static string (or NULL).
            Ok(p) if !p.is_null() => unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned(),
            _ => "UNKNOWN".into(),
        }
    }

    pub fn set_config_item(&self, key: &str, value: &str) -> Result<(), LxcError> {
        let op = "set_config_item";
        let (k, v) = (self.c(key, op)?, self.c(value, op)?);
        let ok = lxc_call!(
            self,
            set_config_item,
            "set_config_item",
            k.as_ptr(),
            v.as_ptr()
        )?;
        if ok {
            Ok(())
        } else {
            Err(self.error(
                "set_config_item",
                &format!("liblxc rejected {key} = {value}"),
            ))
        }
    }

    /// Replaces the in-memory config with the file at `path` (LXC config syntax).
    pub fn load_config(&self, path: &Path) -> Result<(), LxcError> {
        let p = self.c(&path.to_string_lossy(), "load_config")?;
        let ok = lxc_call!(self, load_config, "load_config", p.as_ptr())?;
        self.check(ok, "load_config")
    }

    /// Writes the in-memory config to the container's `config` file.
    pub fn save_config(&self) -> Result<(), LxcError> {
        let ok = lxc_call!(self, save_config, "save_config", ptr::null())?;
        self.check(ok, "save_config")
    }

    /// Creates the container's rootfs with a template (`local`, `download`) and its arguments.
    /// liblxc logs to the container's own log file from here on, so failures say why.
    pub fn create(&self, template: &str, args: &[&str]) -> Result<(), LxcError> {
        std::fs::create_dir_all(self.dir()).map_err(|e| LxcError {
            op: "create",
            name: self.name.clone(),
            detail: format!("cannot create {}: {e}", self.dir().display()),
        })?;
        self.set_config_item("lxc.log.file", &self.dir().join(LOG_FILE).to_string_lossy())?;
        self.set_config_item("lxc.log.level", "WARN")?;
        let t = self.c(template, "create")?;
        let owned = self.c_all(args, "create")?;
        let mut argv: Vec<*const std::os::raw::c_char> = owned.iter().map(|a| a.as_ptr()).collect();
        argv.push(ptr::null());
        let ok = lxc_call!(
            self,
            create,
            "create",
            t.as_ptr(),
            ptr::null(),
            ptr::null_mut(),
            0,
            argv.as_ptr()
        )?;
        self.check(ok, "create")
    }

    /// Starts the container's init in the background.
    pub fn start(&self) -> Result<(), LxcError> {
        lxc_call!(self, want_daemonize, "want_daemonize", true)?;
        let ok = lxc_call!(self, start, "start", 0, ptr::null())?;
        self.check(ok, "start")
    }

    /// Waits up to `timeout_secs` for `state` (e.g. `RUNNING`); true if reached.
    pub fn wait(&self, state: &str, timeout_secs: i32) -> bool {
        let Ok(s) = self.c(state, "wait") else {
            return false;
        };
        lxc_call!(self, wait, "wait", s.as_ptr(), timeout_secs).unwrap_or(false)
    }

    /// Asks init to shut down cleanly, waiting up to `timeout_secs`; true if it stopped.
    pub fn shutdown(&self, timeout_secs: i32) -> bool {
        lxc_call!(self, shutdown, "shutdown", timeout_secs).unwrap_or(false)
    }

    /// Kills the container at once.
    pub fn stop(&self) -> Result<(), LxcError> {
        let ok = lxc_call!(self, stop, "stop")?;
        self.check(ok, "stop")
    }

    /// Freezes every process of the container (cgroup freezer): a still point for a backup.
    pub fn freeze(&self) -> Result<(), LxcError> {
        let ok = lxc_call!(self, freeze, "freeze")?;
        self.check(ok, "freeze")
    }

    pub fn unfreeze(&self) -> Result<(), LxcError> {
        let ok = lxc_call!(self, unfreeze, "unfreeze")?;
        self.check(ok, "unfreeze")
    }

    /// Removes the container's rootfs and directory. It must be stopped.
    pub fn destroy(&self) -> Result<(), LxcError> {
        let ok = lxc_call!(self, destroy, "destroy")?;
        self.check(ok, "destroy")
    }

    /// The host pid of the container's init, if running.
    pub fn init_pid(&self) -> Option<i32> {
        lxc_call!(self, init_pid, "init_pid")
            .ok()
            .filter(|p| *p > 0)
    }

    /// Runs `argv` inside the container (all namespaces, as root, with a clean environment)
    /// and returns its exit code and output. argv is passed as argv: no shell.
    pub fn attach_run(&self, argv: &[&str]) -> Result<AttachOutput, LxcError> {
        let io = |what| {
            tempfile_in_tmp().map_err(|e| LxcError {
                op: "attach",
                name: self.name.clone(),
                detail: format!("cannot create a temp file for {what}: {e}"),
            })
        };
        let (mut out, mut err) = (io("stdout")?, io("stderr")?);
        let devnull = File::open("/dev/null").map_err(|e| LxcError {
            op: "attach",
            name: self.name.clone(),
            detail: e.to_string(),
        })?;
        let code =
            self.attach_with_fds(argv, devnull.as_raw_fd(), out.as_raw_fd(), err.as_raw_fd())?;
        let read = |f: &mut File| {
            let mut buf = Vec::new();
            let _ = f.rewind();
            let _ = f.read_to_end(&mut buf);
            buf
        };
        Ok(AttachOutput {
            code,
            stdout: read(&mut out),
            stderr: read(&mut err),
        })
    }

    /// Runs `argv` inside the container with the given stdio descriptors (ours, to stream
    /// output as it comes) and returns its exit code.
    pub fn attach_with_fds(
        &self,
        argv: &[&str],
        stdin_fd: i32,
        stdout_fd: i32,
        stderr_fd: i32,
    ) -> Result<i32, LxcError> {
        let env: Vec<CString> = [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME=/root",
            "LANG=C.UTF-8",
        ]
        .iter()
        .map(|s| self.c(s, "attach"))
        .collect::<Result<_, _>>()?;
        let mut env_ptrs: Vec<*mut std::os::raw::c_char> =
            env.iter().map(|e| e.as_ptr() as *mut _).collect();
        env_ptrs.push(ptr::null_mut());
        let mut opts = lxc_sys::lxc_attach_options_t {
            attach_flags: lxc_sys::LXC_ATTACH_DEFAULT as i32,
            namespaces: -1,
            personality: lxc_sys::LXC_ATTACH_DETECT_PERSONALITY as std::os::raw::c_long,
            initial_cwd: ptr::null_mut(),
            uid: 0,
            gid: 0,
            env_policy: lxc_sys::lxc_attach_env_policy_t_LXC_ATTACH_CLEAR_ENV,
            extra_env_vars: env_ptrs.as_mut_ptr(),
            extra_keep_env: ptr::null_mut(),
            stdin_fd,
            stdout_fd,
            stderr_fd,
            log_fd: -libc_ebadf(),
            lsm_label: ptr::null_mut(),
            groups: lxc_sys::lxc_groups_t {
                size: 0,
                list: ptr::null_mut(),
            },
        };
        let owned = self.c_all(argv, "attach")?;
        let mut args: Vec<*const std::os::raw::c_char> = owned.iter().map(|a| a.as_ptr()).collect();
        args.push(ptr::null());
        let program = owned
            .first()
            .ok_or_else(|| self.error("attach", "empty command"))?;
        let status = lxc_call!(
            self,
            attach_run_wait,
            "attach",
            &mut opts,
            program.as_ptr(),
            args.as_ptr()
        )?;
        if status < 0 {
            return Err(self.error("attach", "could not attach to the container"));
        }
        Ok(wait_status_code(status))
    }

    /// The container's IPv4 addresses, loopback excluded.
    pub fn ipv4(&self) -> Vec<String> {
        let Ok(list) = lxc_call!(self, get_ips, "get_ips", ptr::null(), c"inet".as_ptr(), 0) else {
            return Vec::new();
        };
        if list.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        // SAFETY: get_ips returns a NULL-terminated array of malloc'd strings we must free.
        unsafe {
            let mut i = 0;
            while !(*list.add(i)).is_null() {
                let s = *list.add(i);
                let ip = CStr::from_ptr(s).to_string_lossy().into_owned();
                if !ip.starts_with("127.") {
                    out.push(ip);
                }
                nix::libc::free(s as *mut _);
                i += 1;
            }
            nix::libc::free(list as *mut _);
        }
        out
    }

    /// Writes a cgroup setting of the running container (`memory.limit_in_bytes`, ...).
    pub fn set_cgroup_item(&self, key: &str, value: &str) -> Result<(), LxcError> {
        let op = "set_cgroup_item";
        let (k, v) = (self.c(key, op)?, self.c(value, op)?);
        let ok = lxc_call!(
            self,
            set_cgroup_item,
            "set_cgroup_item",
            k.as_ptr(),
            v.as_ptr()
        )?;
        if ok {
            Ok(())
        } else {
            Err(self.error(
                "set_cgroup_item",
                &format!("the host refused {key} = {value}"),
            ))
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SAFETY: we own exactly one reference, taken in `new`.
        unsafe { lxc_sys::lxc_container_put(self.ptr.as_ptr()) };
    }
}

/// Output of a command run with [`Container::attach_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOutput {
    /// Exit code, or 128 + signal.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A `waitpid` status as a shell reports it.
fn wait_status_code(status: i32) -> i32 {
    if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        128 + (status & 0x7f)
    }
}

fn libc_ebadf() -> i32 {
    nix::errno::Errno::EBADF as i32
}

/// An unlinked temp file: output of any size, no pipe to deadlock on.
fn tempfile_in_tmp() -> std::io::Result<File> {
    let path = std::env::temp_dir().join(format!(
        "nox-attach-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let f = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

/// The last `n` lines liblxc logged, without its timestamp prefixes.
fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let lines: Vec<String> = text
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .map(|l| {
            // "lxc 20261125 ... ERROR start - ../src/lxc/start.c:123 - message"
            l.rsplit(" - ").next().unwrap_or(l).trim().to_string()
        })
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decodes_exits_and_signals() {
        assert_eq!(wait_status_code(0), 0);
        assert_eq!(wait_status_code(3 << 8), 3);
        assert_eq!(wait_status_code(9), 137);
    }

    #[test]
    fn log_tail_keeps_liblxc_messages() {
        let dir = std::env::temp_dir().join(format!("nox-log-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("log");
        std::fs::write(
            &p,
            "lxc c 20261125 INFO conf - conf.c:1 - fine\n\
             lxc c 20261125 ERROR start - start.c:2 - Failed to exec init\n",
        )
        .unwrap();
        assert_eq!(log_tail(&p, 5), vec!["Failed to exec init".to_string()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod nul_tests {
    use super::*;

    #[test]
    fn a_nul_byte_is_an_error_naming_the_operation_not_a_panic() {
        let e = Container::new("web", Path::new("/var/lib/lxc\0x")).unwrap_err();
        assert_eq!(e.op, "lxc_container_new");
        assert!(e.detail.contains("NUL"), "{e}");
        let e = Container::new("we\0b", Path::new("/var/lib/lxc")).unwrap_err();
        assert!(e.detail.contains("NUL"), "{e}");
    }
}
