//! Stand-ins for the host in unit tests of decisions (what create, backup and restore do
//! with what they find), the way youki tests against a fake `Syscall`. Built for this crate's
//! tests and, through the `fake-host` feature, for other crates' tests; never in nox itself.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use super::facts::{HostFacts, Interface, InterfaceKind};
use super::runner::{Cmd, Finished, Runner, Stdin, Stdout};
use crate::error::{Error, Result};

/// A host with fixed facts and a predictable "random" byte sequence (0, 1, 2, ...).
#[derive(Debug)]
pub struct FakeHost {
    pub interfaces: Vec<Interface>,
    pub cpus: u32,
    pub memory_bytes: u64,
    pub free_bytes: u64,
    next: AtomicU8,
}

impl Default for FakeHost {
    /// 4 CPUs, 8 GiB, 100 GiB free, `lo`, `eth0` and the bridges `lxcbr0` and `br0`.
    fn default() -> Self {
        let iface = |name: &str, kind| Interface {
            name: name.into(),
            kind,
            mac: Some("02:00:00:00:00:01".into()),
        };
        FakeHost {
            interfaces: vec![
                iface("br0", InterfaceKind::Bridge),
                iface("eth0", InterfaceKind::Physical),
                iface("lo", InterfaceKind::Loopback),
                iface("lxcbr0", InterfaceKind::Bridge),
            ],
            cpus: 4,
            memory_bytes: 8 << 30,
            free_bytes: 100 << 30,
            next: AtomicU8::new(0),
        }
    }
}

impl FakeHost {
    /// The default host with these interfaces instead.
    pub fn with_interfaces(interfaces: Vec<Interface>) -> FakeHost {
        FakeHost {
            interfaces,
            ..Default::default()
        }
    }
}

impl HostFacts for FakeHost {
    fn interfaces(&self) -> Result<Vec<Interface>> {
        Ok(self.interfaces.clone())
    }
    fn fill_random(&self, buf: &mut [u8]) -> Result<()> {
        for b in buf {
            *b = self.next.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
    fn free_space(&self, _: &Path) -> Result<u64> {
        Ok(self.free_bytes)
    }
    fn cpus(&self) -> u32 {
        self.cpus
    }
    fn memory_bytes(&self) -> Result<u64> {
        Ok(self.memory_bytes)
    }
    fn bridge_port_forwarding(&self, _: &str) -> Option<bool> {
        None
    }
}

/// What the fake answers for a program whose argv starts with `prefix`.
#[derive(Debug, Clone)]
struct Rule {
    prefix: Vec<String>,
    finished: Finished,
}

/// Records every program it is asked to run and answers from rules; a program with no rule
/// succeeds with no output.
#[derive(Debug, Default)]
pub struct FakeRunner {
    rules: Mutex<Vec<Rule>>,
    calls: Mutex<Vec<Call>>,
    /// Programs [`Runner::find_program`] finds (in /usr/bin); `None` finds every program.
    pub installed: Option<Vec<String>>,
}

/// One recorded run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub cmd: Cmd,
    pub stdin: Vec<u8>,
}

impl Call {
    /// Program and arguments as text.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(&self.cmd.program)
            .chain(&self.cmd.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }
}

impl FakeRunner {
    /// A runner on a host where only `programs` are installed.
    pub fn with_programs(programs: &[&str]) -> FakeRunner {
        FakeRunner {
            installed: Some(programs.iter().map(|p| p.to_string()).collect()),
            ..Default::default()
        }
    }

    /// Answers runs whose argv starts with `prefix` with `code`, `stdout` and `stderr`.
    pub fn on(&self, prefix: &[&str], code: i32, stdout: &str, stderr: &str) {
        self.rules.lock().unwrap().push(Rule {
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            finished: Finished {
                code: Some(code),
                stdout: stdout.as_bytes().to_vec(),
                stderr: stderr.as_bytes().to_vec(),
                timed_out: false,
            },
        });
    }

    /// Every run so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Every run's argv so far, in order.
    pub fn argvs(&self) -> Vec<Vec<String>> {
        self.calls().iter().map(Call::argv).collect()
    }
}

impl Runner for FakeRunner {
    fn execute(&self, cmd: &Cmd, stdin: Stdin<'_>, stdout: Stdout<'_>) -> Result<Finished> {
        let mut input = Vec::new();
        match stdin {
            Stdin::Null => {}
            Stdin::Bytes(b) => input.extend_from_slice(b),
            Stdin::Stream(r) => {
                r.read_to_end(&mut input)
                    .map_err(|e| Error::io("fake stdin", e))?;
            }
        }
        let call = Call {
            cmd: cmd.clone(),
            stdin: input,
        };
        let argv = call.argv();
        self.calls.lock().unwrap().push(call);
        let rule = self
            .rules
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| argv.starts_with(&r.prefix))
            .map(|r| r.finished.clone());
        let mut f = rule.unwrap_or(Finished {
            code: Some(0),
            ..Default::default()
        });
        if let Stdout::Stream(w) = stdout {
            w.write_all(&f.stdout)
                .map_err(|e| Error::io("fake stdout", e))?;
            f.stdout.clear();
        }
        Ok(f)
    }

    fn replace_process(&self, cmd: &Cmd) -> Error {
        self.calls.lock().unwrap().push(Call {
            cmd: cmd.clone(),
            stdin: Vec::new(),
        });
        Error::failure(format!("fake: would hand over to {}", cmd.display()))
    }

    fn find_program(&self, name: &str) -> Option<PathBuf> {
        match &self.installed {
            Some(list) if !list.iter().any(|p| p == name) => None,
            _ => Some(Path::new("/usr/bin").join(name)),
        }
    }
}
