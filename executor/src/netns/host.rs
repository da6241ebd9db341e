//! Network mode `host`: every task in a network namespace of its own,
//! routed to the worker's network.
//!
//! A task sees only its own sockets in `/proc/self/net`, has its own
//! loopback, and reaches the worker's network through a veth pair: `eth0`
//! in its namespace, with the address `10.213.X.Y/32` and a default route
//! through the worker, and `alkN` on the host, with a host route to that one
//! address. Every packet of a task goes through the worker, other tasks'
//! included, where the table below decides. What the host adds, once:
//!
//! - a link `airlock0` (a bridge without ports: the `dummy` kind is not in
//!   every kernel) holding the gateway `10.213.0.1` (the worker as
//!   tasks see it) and `169.254.170.2`, the container-credentials address
//!   AWS SDKs accept plain HTTP from;
//! - IPv4 forwarding (`net.ipv4.ip_forward`), as container runtimes do;
//! - routing rules that refuse packets from one task address to another,
//!   and an `unreachable` route for the subnet (packets to an address no
//!   task has stay on the worker): tasks stay apart even if the table below
//!   is flushed;
//! - the nftables table `inet airlock` (`ruleset` lists its rules), put
//!   back by a watcher thread when it is gone.
//!
//! A packet from a task's namespace carries that task's address, so the
//! credentials endpoint knows a task by the address a connection comes
//! from. A task can change none of this: addresses, routes and links need
//! `CAP_NET_ADMIN` over the namespace, which belongs to the initial user
//! namespace, and tasks hold no capability. It cannot forge a source
//! address either: raw sockets need `CAP_NET_RAW` (and seccomp refuses
//! them), and the kernel will not route a datagram from a foreign address
//! bound with `IP_FREEBIND` (ENETUNREACH; `tests/suite/network.rs` tries).
//! IPv6 is off inside a task's namespace and on the host ends.

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::sched::{setns, unshare, CloneFlags};

use super::rtnl::{index_of, Rtnl};

/// The tasks' subnet; `.0.1` is the gateway, every other address a task's.
pub const SUBNET: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 0);
/// Its prefix length.
pub const PREFIX: u8 = 16;
/// The worker as tasks see it.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// Where the credentials endpoint listens (AWS SDKs accept plain HTTP to
/// loopback and to this address, the ECS container-credentials one).
pub const ENDPOINT_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);
/// The link holding [`GATEWAY`] and [`ENDPOINT_ADDR`].
pub const LINK: &str = "airlock0";
/// Host ends of tasks' veth pairs are this plus a number.
pub const VETH_PREFIX: &str = "alk";
/// The cloud metadata service, never reachable from a task.
const METADATA: &str = "169.254.169.254";
/// Priority of the routing rules that keep tasks apart (before the main
/// table's, 32766).
const RULE_PRIORITY: u32 = 10213;
/// Most flows (connections, UDP and ICMP exchanges) one task may have in
/// the worker's connection-tracking table at once.
pub const FLOWS: u32 = 1024;
/// Marks the rule that keeps a host that did not forward from forwarding
/// anything but tasks' traffic.
const NO_FORWARD_MARK: &str = "airlock: the host did not forward before";

/// A task namespace's wiring: the host end's name and the task's address.
#[derive(Debug)]
pub struct Wiring {
    /// The host end of the veth pair.
    pub link: String,
    /// The task's address.
    pub addr: Ipv4Addr,
}

impl Drop for Wiring {
    /// Deleting the host end deletes the pair: the namespace is cut off from
    /// the worker and its address can be given out again.
    fn drop(&mut self) {
        let deleted = Rtnl::open().and_then(|mut nl| nl.del_link(&self.link));
        if let Err(err) = deleted.or_else(|e| if e == Errno::ENODEV { Ok(()) } else { Err(e) }) {
            tracing::warn!(link = %self.link, %err, "could not delete a task's veth pair");
        }
    }
}

/// The link with the gateway and the endpoint's address, and the routing
/// rules for tasks' addresses, made once per process (and kept when they
/// exist: other airlockd instances may use them). The calling thread must
/// be in the host's network namespace.
pub fn link() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let err = |what: &str, e: Errno| {
            format!("{what}: {e} (airlockd must run as root in the host's network namespace)")
        };
        let mut nl = Rtnl::open().map_err(|e| err("open rtnetlink", e))?;
        nl.add_link(LINK, "bridge")
            .map_err(|e| err(&format!("create link {LINK}"), e))?;
        let index = index_of(LINK).map_err(|e| err(&format!("find link {LINK}"), e))?;
        for addr in [GATEWAY, ENDPOINT_ADDR] {
            nl.add_addr(index, addr, 32)
                .map_err(|e| err(&format!("add {addr} to {LINK}"), e))?;
        }
        nl.link_up(index)
            .map_err(|e| err(&format!("bring {LINK} up"), e))?;
        // Routing keeps tasks apart even without the nftables table (which
        // an operator's `nft flush ruleset` would take away): a packet from
        // one task address to another is refused, and one to a task
        // address not in use never leaves the worker. The worker's own
        // answers from the gateway address are routed as usual.
        let subnet = (SUBNET, PREFIX);
        nl.add_rule(RULE_PRIORITY, (GATEWAY, 32), None, false)
            .and_then(|()| nl.add_rule(RULE_PRIORITY + 1, subnet, Some(subnet), true))
            .map_err(|e| err("add the routing rules for tasks", e))?;
        nl.add_unreachable(SUBNET, PREFIX)
            .map_err(|e| err("add the unreachable route for tasks' subnet", e))
    })
    .clone()
}

/// Everything the host needs for tasks on the network: [`link`], IPv4
/// forwarding and the nftables table. Done once per process; a second
/// airlockd writes the same table.
pub fn setup() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        link()?;
        let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .map_err(|e| format!("read /proc/sys/net/ipv4/ip_forward: {e}"))?;
        // Off before (or turned on by an earlier airlockd that found it
        // off, as its table says): keep everything but tasks unforwarded.
        let keep_off = forwarding.trim() == "0"
            || nft(&["list", "table", "inet", "airlock"], "")
                .map(|out| out.contains(NO_FORWARD_MARK))
                .unwrap_or(false);
        let rules = ruleset(keep_off);
        nft(&["-f", "-"], &rules)?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| format!("turn on IPv4 forwarding: {e}"))?;
        tracing::info!(
            link = LINK,
            subnet = %format!("{SUBNET}/{PREFIX}"),
            forwarding_was_off = keep_off,
            "tasks' network: own namespaces routed through {LINK}, nftables table inet airlock"
        );
        std::thread::spawn(move || watch(&rules));
        Ok(())
    })
    .clone()
}

/// The nftables table, replaced atomically. Rules, by chain:
/// - prerouting: only tasks' veths carry task addresses, and only tasks and
///   the worker itself reach the addresses tasks see the worker at; a task
///   may hold at most [`FLOWS`] tracked flows at once (it cannot fill the
///   worker's connection-tracking table, shared by everyone's traffic);
/// - input and forward: nothing to the metadata service;
/// - forward: into a task only answers to its own connections (so nothing
///   from one task to another); if the host did not forward before, nothing
///   else either (IPv4 only: its IPv6 forwarding is left as it was);
/// - postrouting: tasks' traffic leaving the worker is masqueraded.
fn ruleset(keep_off: bool) -> String {
    let veth = format!("\"{VETH_PREFIX}*\"");
    let keep_off = match keep_off {
        true => format!(
            "meta nfproto ipv4 iifname != {veth} oifname != {veth} drop comment \"{NO_FORWARD_MARK}\""
        ),
        false => String::new(),
    };
    format!(
        "table inet airlock
delete table inet airlock
table inet airlock {{
    set flows {{
        type ipv4_addr
        size 65535
        flags dynamic
    }}
    chain prerouting {{
        type filter hook prerouting priority -150; policy accept;
        iifname \"lo\" accept
        iifname != {veth} ip saddr {SUBNET}/{PREFIX} drop
        iifname != {veth} ip daddr {{ {GATEWAY}, {ENDPOINT_ADDR} }} drop
        iifname {veth} ct state new add @flows {{ ip saddr ct count over {FLOWS} }} drop
    }}
    chain input {{
        type filter hook input priority 0; policy accept;
        iifname {veth} ip daddr {METADATA} drop
    }}
    chain forward {{
        type filter hook forward priority 0; policy accept;
        iifname {veth} ip daddr {METADATA} drop
        oifname {veth} ct state established,related accept
        oifname {veth} drop
        {keep_off}
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        ip saddr {SUBNET}/{PREFIX} oifname != {veth} masquerade
    }}
}}
"
    )
}

/// Puts the table back whenever it is gone (an operator's `nft flush
/// ruleset`, or a reload of the host's firewall), checking every 10 s.
/// Routing still keeps tasks apart meanwhile ([`link`]).
fn watch(rules: &str) {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(10));
        if nft(&["list", "table", "inet", "airlock"], "").is_ok() {
            continue;
        }
        match nft(&["-f", "-"], rules) {
            Ok(_) => tracing::error!(
                "the nftables table inet airlock was gone (a flushed ruleset?); restored it"
            ),
            Err(err) => {
                tracing::error!(%err, "the nftables table inet airlock is gone and could not be restored")
            }
        }
    }
}

/// Runs `nft` with `stdin`; its stdout, or what went wrong.
fn nft(args: &[&str], stdin: &str) -> Result<String, String> {
    let mut child = std::process::Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "run nft: {e}; network mode host needs nftables (Debian: apt-get install nftables)"
            )
        })?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .map_err(|e| format!("write to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait for nft: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "nft {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The next address index to try; a task's address is `SUBNET + index`.
/// Starts at a place that differs between airlockd instances; an index
/// whose link name is taken (by another instance) is skipped.
fn next_index() -> u32 {
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7919)));
    // 2..=65534: not the subnet's own address, the gateway or broadcast.
    2 + next.fetch_add(1, Ordering::Relaxed) % 65533
}

/// Makes a network namespace wired to the host, in a short-lived thread
/// (namespace changes affect only the calling thread).
pub fn create() -> std::io::Result<(File, Wiring)> {
    super::on_own_thread(create_here)
}

fn create_here() -> std::io::Result<(File, Wiring)> {
    let sys = |what: &'static str| move |e: Errno| std::io::Error::other(format!("{what}: {e}"));
    let host_ns = File::open("/proc/thread-self/ns/net")?;
    let mut host = Rtnl::open().map_err(sys("open rtnetlink"))?;
    unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare a network namespace"))?;
    let ns = File::open("/proc/thread-self/ns/net")?;
    let mut inner = Rtnl::open().map_err(sys("open rtnetlink in the namespace"))?;
    for knob in ["all", "default"] {
        no_ipv6(&format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6"))?;
    }
    inner.link_up(1).map_err(sys("bring lo up"))?; // lo is always index 1
    let (link, addr) = loop {
        let index = next_index();
        let link = format!("{VETH_PREFIX}{index}");
        match host.add_veth(&link, "eth0", &ns) {
            Ok(()) => break (link, Ipv4Addr::from(u32::from(SUBNET) + index)),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(sys("create a veth pair")(e)),
        }
    };
    // From here on, dropping `wiring` deletes the pair.
    let wiring = Wiring { link, addr };
    setns(&host_ns, CloneFlags::CLONE_NEWNET).map_err(sys("return to the host namespace"))?;
    no_ipv6(&format!(
        "/proc/sys/net/ipv6/conf/{}/disable_ipv6",
        wiring.link
    ))?;
    let host_end = index_of(&wiring.link).map_err(sys("find the host end"))?;
    host.link_up(host_end)
        .map_err(sys("bring the host end up"))?;
    host.add_route(addr, 32, host_end, None)
        .map_err(sys("route to the task's address"))?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(sys("enter the namespace"))?;
    let eth0 = index_of("eth0").map_err(sys("find eth0"))?;
    inner.link_up(eth0).map_err(sys("bring eth0 up"))?;
    inner
        .add_addr(eth0, addr, 32)
        .map_err(sys("address eth0"))?;
    inner
        .add_route(Ipv4Addr::UNSPECIFIED, 0, eth0, Some(GATEWAY))
        .map_err(sys("default route"))?;
    Ok((ns, wiring))
}

/// Turns IPv6 off through `knob`; nothing to do on a kernel without IPv6.
fn no_ipv6(knob: &str) -> std::io::Result<()> {
    match std::fs::write(knob, "1") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
