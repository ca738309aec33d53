//! nftables DNAT for forwards to instances on a bridge (containers on `lxcbr0`, VMs on
//! libvirt's NAT network or a host bridge).
//!
//! nox keeps everything in its own table, `ip nox`, so it never touches another program's
//! rules (libvirt's, LXC's, Docker's, iptables-nft's). The table holds four maps from a host
//! socket to a guest socket, one per protocol for a specific host address (`tcp_local`:
//! `127.0.0.1 . 8080 : 10.0.3.5 . 80`) and one per protocol for "every host address" (`tcp_any`:
//! `8080 : 10.0.3.5 . 80`, matched only on packets addressed to this host, `fib daddr type
//! local`). One rule per map and hook looks the packet up:
//! - `prerouting` (dstnat) serves packets arriving from elsewhere;
//! - `output` serves packets this host sends itself (`curl 127.0.0.1:8080`);
//! - `postrouting` masquerades DNATed packets whose source is loopback, so the guest answers
//!   the bridge address rather than a 127.0.0.1 it cannot reach.
//!
//! Each element carries the comment `nox:INSTANCE`. Adding and removing an instance's forwards
//! changes its elements only, so other instances' forwards never blink. Adding is one `nft -f`
//! transaction that also declares the skeleton (table, maps, chains, rules) again: `add` of
//! what exists is a no-op, and the chains are flushed and refilled in the same transaction so
//! their rules never pile up. Removing deletes element by element, and an element already gone
//! is not an error: nft 1.0.6 (Debian 12) has no `destroy`, and adding a placeholder first
//! (the usual idiom) fails on a map element whose value differs.
//!
//! Routing a locally sent packet from 127.0.0.1 out of a bridge needs the bridge's
//! `route_localnet` sysctl ([`allow_localnet`]); the kernel otherwise drops it as a martian.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::{Forward, Proto};
use crate::error::{Error, Result};
use crate::host::{Cmd, Runner, Stdin, Stdout};

/// nox's table (family `ip`: forwards reach guests' IPv4 addresses).
pub const TABLE: &str = "nox";

fn map_name(f: &Forward) -> String {
    let scope = if f.address.is_unspecified() {
        "any"
    } else {
        "local"
    };
    format!("{}_{scope}", f.proto)
}

fn key(f: &Forward) -> String {
    if f.address.is_unspecified() {
        f.host_port.to_string()
    } else {
        format!("{} . {}", f.address, f.host_port)
    }
}

fn skeleton(out: &mut String) {
    let t = TABLE;
    let _ = writeln!(out, "add table ip {t}");
    for proto in [Proto::Tcp, Proto::Udp] {
        let _ = writeln!(
            out,
            "add map ip {t} {proto}_local {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}"
        );
        let _ = writeln!(
            out,
            "add map ip {t} {proto}_any {{ type inet_service : ipv4_addr . inet_service; }}"
        );
    }
    let _ = writeln!(
        out,
        "add chain ip {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}"
    );
    let _ = writeln!(
        out,
        "add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}"
    );
    let _ = writeln!(
        out,
        "add chain ip {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}"
    );
    for chain in ["prerouting", "output", "postrouting"] {
        let _ = writeln!(out, "flush chain ip {t} {chain}");
    }
    for chain in ["prerouting", "output"] {
        for proto in [Proto::Tcp, Proto::Udp] {
            let _ = writeln!(
                out,
                "add rule ip {t} {chain} dnat ip to ip daddr . {proto} dport map @{proto}_local"
            );
            let _ = writeln!(
                out,
                "add rule ip {t} {chain} fib daddr type local dnat ip to {proto} dport map @{proto}_any"
            );
        }
    }
    let _ = writeln!(
        out,
        "add rule ip {t} postrouting ip saddr 127.0.0.0/8 ct status dnat masquerade"
    );
}

/// The `nft -f` script that points `targets` (each forward with the guest address it reaches
/// now) at their guests; their old elements must be gone ([`remove`]).
pub fn apply_script(instance: &str, targets: &[(Forward, Ipv4Addr)]) -> String {
    let mut out = String::new();
    skeleton(&mut out);
    for (f, guest) in targets {
        let _ = writeln!(
            out,
            "add element ip {} {} {{ {} comment \"nox:{instance}\" : {guest} . {} }}",
            TABLE,
            map_name(f),
            key(f),
            f.guest_port
        );
    }
    out
}

fn nft(runner: &dyn Runner, script: &str, what: &str) -> Result<()> {
    let cmd = Cmd::new("nft").args(["-f", "-"]).package("nftables");
    runner
        .run_with_input(&cmd, script.as_bytes())
        .map(drop)
        .map_err(|e| e.context(what.to_string()))
}

/// Points `targets` at their guests (see [`apply_script`]); `bridge` is the host bridge the
/// guest is on, which gets `route_localnet` when any forward is on a loopback address.
pub fn apply(
    runner: &dyn Runner,
    instance: &str,
    bridge: &str,
    targets: &[(Forward, Ipv4Addr)],
) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    if targets.iter().any(|(f, _)| !f.address.is_unspecified()) {
        allow_localnet(bridge)?;
    }
    let forwards: Vec<Forward> = targets.iter().map(|(f, _)| *f).collect();
    remove(runner, instance, &forwards)?;
    nft(
        runner,
        &apply_script(instance, targets),
        &format!("adding {instance}'s port forwards to nftables table ip {TABLE}"),
    )
}

/// Points `forwards` at the guest's address in this boot, as [`apply`] does, waiting up to
/// `within` for `address` to have one (a guest just started has none until its DHCP
/// exchange); `address` fails to end the wait early, as when the guest has stopped. `check`
/// is where the user looks when it never comes. Both backends start guests
/// whose addresses change between boots, so both come here at every start.
#[allow(clippy::too_many_arguments)]
pub fn apply_when_addressed(
    runner: &dyn Runner,
    instance: &str,
    bridge: &str,
    forwards: &[Forward],
    within: std::time::Duration,
    check: &str,
    progress: &dyn crate::Progress,
    mut address: impl FnMut() -> Result<Option<Ipv4Addr>>,
) -> Result<()> {
    if forwards.is_empty() {
        return Ok(());
    }
    let address = match address()? {
        Some(a) => a,
        None => {
            progress.step(&format!(
                "waiting for {instance}'s address for its port forwards"
            ));
            let got =
                crate::wait::wait_until(within, std::time::Duration::from_millis(250), |waited| {
                    progress.waiting("the guest's address", waited);
                    crate::interrupt::check()?;
                    address()
                });
            progress.done();
            got?.ok_or_else(|| {
                Error::failed(
                    format!(
                        "{instance} has no IPv4 address after {}s, so its port forwards point nowhere",
                        within.as_secs()
                    ),
                    format!("check its network ({check}), then `nox restart {instance}`"),
                )
            })?
        }
    };
    let targets: Vec<(Forward, Ipv4Addr)> = forwards.iter().map(|f| (*f, address)).collect();
    apply(runner, instance, bridge, &targets)
}

/// The `nft` argv that deletes `f`'s element.
pub fn delete_argv(f: &Forward) -> Vec<String> {
    let k = key(f);
    let mut argv: Vec<String> = ["delete", "element", "ip", TABLE]
        .into_iter()
        .map(String::from)
        .collect();
    argv.push(map_name(f));
    argv.extend(["{".to_string(), k, "}".to_string()]);
    argv
}

/// Removes `forwards`' DNAT elements; one already gone (or a table never made) is fine.
pub fn remove(runner: &dyn Runner, instance: &str, forwards: &[Forward]) -> Result<()> {
    for f in forwards {
        let cmd = Cmd::new("nft").args(delete_argv(f)).package("nftables");
        let done = runner.execute(&cmd, Stdin::Null, Stdout::Capture)?;
        if done.success()
            || String::from_utf8_lossy(&done.stderr).contains("No such file or directory")
        {
            continue;
        }
        return done.check(&cmd).map(drop).map_err(|e| {
            e.context(format!(
                "removing {instance}'s forward {f} from nftables table ip {TABLE}"
            ))
        });
    }
    Ok(())
}

/// Sets `net.ipv4.conf.BRIDGE.route_localnet=1`, without which the kernel drops a packet sent
/// from 127.0.0.1 that DNAT rerouted out of `bridge`. It lets loopback-addressed packets be
/// routed on that one interface; nox's own rules only ever send them to its guests.
pub fn allow_localnet(bridge: &str) -> Result<()> {
    if !crate::instance::is_interface_name(bridge) {
        return Err(Error::failure(format!(
            "{bridge:?} is not an interface name"
        )));
    }
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    std::fs::write(&path, b"1").map_err(|e| Error::io(format!("writing {path}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(spec: &str, address: Ipv4Addr) -> Forward {
        Forward::parse(spec, address).unwrap()
    }

    fn golden(name: &str, actual: &str) {
        crate::golden::assert_golden(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden"),
            name,
            actual,
        );
    }

    #[test]
    fn golden_apply_script() {
        let lo = Ipv4Addr::LOCALHOST;
        let guest = Ipv4Addr::new(10, 0, 3, 57);
        let targets = [
            (fwd("8080:80", lo), guest),
            (fwd("5353:53/udp", lo), guest),
            (fwd("2222:22", Ipv4Addr::UNSPECIFIED), guest),
        ];
        golden("nft-forward-apply.nft", &apply_script("web", &targets));
    }

    #[test]
    fn removal_deletes_each_element_and_tolerates_one_already_gone() {
        let (host, _, runner) = crate::host::Host::fake();
        runner.on(
            &["nft", "delete", "element", "ip", "nox", "tcp_local"],
            1,
            "",
            "Error: Could not process rule: No such file or directory",
        );
        let lo = fwd("8080:80", Ipv4Addr::LOCALHOST);
        let any = fwd("53:53/udp", Ipv4Addr::UNSPECIFIED);
        remove(&*host.runner, "web", &[lo, any]).unwrap();
        let argvs: Vec<String> = runner.calls().iter().map(|c| c.argv().join(" ")).collect();
        assert_eq!(
            argvs,
            [
                "nft delete element ip nox tcp_local { 127.0.0.1 . 8080 }",
                "nft delete element ip nox udp_any { 53 }",
            ]
        );
        runner.on(&["nft", "delete"], 1, "", "Error: Operation not permitted");
        let err = remove(&*host.runner, "web", &[any]).unwrap_err();
        assert!(err.to_string().contains("Operation not permitted"), "{err}");
    }

    #[test]
    fn nothing_to_do_runs_nothing() {
        let (host, _, runner) = crate::host::Host::fake();
        apply(&*host.runner, "web", "lxcbr0", &[]).unwrap();
        remove(&*host.runner, "web", &[]).unwrap();
        assert!(runner.calls().is_empty());
    }
}
