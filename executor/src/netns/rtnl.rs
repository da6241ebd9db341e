//! Just enough rtnetlink (rtnetlink(7)) to wire a task's network namespace
//! to the worker: make a veth pair with one end in the namespace, bring
//! links up, add addresses and routes, delete a link. Each request is sent
//! with `NLM_F_ACK` and the kernel's answer is checked. A socket works in
//! the network namespace of the thread that opened it.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const IFF_UP: u32 = 1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;
const RTN_UNREACHABLE: u8 = 7;
const RTM_NEWRULE: u16 = 32;
const FRA_DST: u16 = 1;
const FRA_SRC: u16 = 2;
const FRA_PRIORITY: u16 = 6;
const FR_ACT_TO_TBL: u8 = 1;
const FR_ACT_PROHIBIT: u8 = 8;
const RTNH_F_ONLINK: u32 = 4;

/// A NETLINK_ROUTE socket of the opening thread's network namespace.
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

/// A message under construction: header, fixed part, attributes.
struct Msg {
    buf: Vec<u8>,
    /// Offsets of nested attributes still open.
    open: Vec<usize>,
}

impl Msg {
    fn new(kind: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend(0u32.to_ne_bytes()); // length, set by `finish`
        buf.extend(kind.to_ne_bytes());
        buf.extend((flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend([0u8; 8]); // sequence (set by `Rtnl::call`), port id
        Self {
            buf,
            open: Vec::new(),
        }
    }

    /// `struct ifinfomsg`: family, type, index, flags, change mask.
    fn ifinfo(mut self, index: i32, flags: u32, change: u32) -> Self {
        self.ifinfo_raw(index, flags, change);
        self
    }

    fn ifinfo_raw(&mut self, index: i32, flags: u32, change: u32) {
        self.buf.extend([libc::AF_UNSPEC as u8, 0, 0, 0]);
        self.buf.extend(index.to_ne_bytes());
        self.buf.extend(flags.to_ne_bytes());
        self.buf.extend(change.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.buf.extend((len as u16).to_ne_bytes());
        self.buf.extend(kind.to_ne_bytes());
        self.buf.extend(data);
        self.pad();
        self
    }

    fn begin(&mut self, kind: u16) -> &mut Self {
        self.open.push(self.buf.len());
        self.buf.extend(0u16.to_ne_bytes());
        self.buf.extend(kind.to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Self {
        if let Some(at) = self.open.pop() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// `Ok` also when what was to be added exists (EEXIST).
fn exists_ok(r: nix::Result<()>) -> nix::Result<()> {
    match r {
        Err(Errno::EEXIST) => Ok(()),
        other => other,
    }
}

/// A new route of `kind` to `dst/prefix` in the main table.
fn route_msg(dst: Ipv4Addr, prefix: u8, scope: u8, kind: u8, flags: u32) -> Msg {
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    // struct rtmsg: family, dst len, src len, tos, table, protocol, scope,
    // type, flags.
    m.buf.extend([
        libc::AF_INET as u8,
        prefix,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_STATIC,
        scope,
        kind,
    ]);
    m.buf.extend(flags.to_ne_bytes());
    if prefix > 0 {
        m.attr(RTA_DST, &dst.octets());
    }
    m
}

fn name_bytes(name: &str) -> Vec<u8> {
    let mut b = name.as_bytes().to_vec();
    b.push(0);
    b
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> nix::Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        Ok(Self { fd, seq: 0 })
    }

    /// A veth pair: `name` here and `peer` in the network namespace `peer_ns`,
    /// both down (a veth end cannot come up before its pair exists:
    /// ENOTCONN).
    pub fn add_veth(&mut self, name: &str, peer: &str, peer_ns: &impl AsRawFd) -> nix::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL).ifinfo(0, 0, 0);
        m.attr(IFLA_IFNAME, &name_bytes(name));
        m.begin(IFLA_LINKINFO).attr(IFLA_INFO_KIND, b"veth\0");
        m.begin(IFLA_INFO_DATA).begin(VETH_INFO_PEER);
        m.ifinfo_raw(0, 0, 0);
        m.attr(IFLA_IFNAME, &name_bytes(peer));
        m.attr(IFLA_NET_NS_FD, &peer_ns.as_raw_fd().to_ne_bytes());
        m.end().end().end();
        self.call(m)
    }

    /// A link of `kind` (e.g. `bridge`) named `name`, up; `Ok` if it exists.
    pub fn add_link(&mut self, name: &str, kind: &str) -> nix::Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE).ifinfo(0, IFF_UP, IFF_UP);
        m.attr(IFLA_IFNAME, &name_bytes(name));
        m.begin(IFLA_LINKINFO)
            .attr(IFLA_INFO_KIND, &name_bytes(kind));
        m.end();
        self.call(m)
    }

    /// Brings link `index` up.
    pub fn link_up(&mut self, index: u32) -> nix::Result<()> {
        self.call(Msg::new(RTM_NEWLINK, 0).ifinfo(index as i32, IFF_UP, IFF_UP))
    }

    /// Deletes the link named `name` (a veth takes its peer with it).
    pub fn del_link(&mut self, name: &str) -> nix::Result<()> {
        let mut m = Msg::new(RTM_DELLINK, 0).ifinfo(0, 0, 0);
        m.attr(IFLA_IFNAME, &name_bytes(name));
        self.call(m)
    }

    /// Adds `addr/prefix` to link `index`; `Ok` if it is there already.
    pub fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> nix::Result<()> {
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE);
        // struct ifaddrmsg: family, prefix length, flags, scope, index.
        m.buf
            .extend([libc::AF_INET as u8, prefix, 0, RT_SCOPE_UNIVERSE]);
        m.buf.extend(index.to_ne_bytes());
        m.attr(IFA_LOCAL, &addr.octets());
        m.attr(IFA_ADDRESS, &addr.octets());
        exists_ok(self.call(m))
    }

    /// A route to `dst/prefix`: out of link `index` directly, or through
    /// `gateway`, which is taken to be on that link (`onlink`: no route to
    /// it is needed).
    pub fn add_route(
        &mut self,
        dst: Ipv4Addr,
        prefix: u8,
        index: u32,
        gateway: Option<Ipv4Addr>,
    ) -> nix::Result<()> {
        let (scope, flags) = match gateway {
            Some(_) => (RT_SCOPE_UNIVERSE, RTNH_F_ONLINK),
            None => (RT_SCOPE_LINK, 0),
        };
        let mut m = route_msg(dst, prefix, scope, RTN_UNICAST, flags);
        m.attr(RTA_OIF, &index.to_ne_bytes());
        if let Some(gw) = gateway {
            m.attr(RTA_GATEWAY, &gw.octets());
        }
        self.call(m)
    }

    /// An `unreachable` route to `dst/prefix` (no packet to it leaves the
    /// host unless a more specific route says otherwise); `Ok` if there.
    pub fn add_unreachable(&mut self, dst: Ipv4Addr, prefix: u8) -> nix::Result<()> {
        let m = route_msg(dst, prefix, RT_SCOPE_UNIVERSE, RTN_UNREACHABLE, 0);
        exists_ok(self.call(m))
    }

    /// A routing rule at `priority`: packets from `from` (to `to`, if given)
    /// are routed by the main table (`prohibit` false) or refused
    /// (`prohibit` true: EACCES, an ICMP "prohibited" for forwarded ones).
    /// `Ok` if the same rule is there.
    pub fn add_rule(
        &mut self,
        priority: u32,
        from: (Ipv4Addr, u8),
        to: Option<(Ipv4Addr, u8)>,
        prohibit: bool,
    ) -> nix::Result<()> {
        let mut m = Msg::new(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL);
        let (action, table) = match prohibit {
            true => (FR_ACT_PROHIBIT, 0),
            false => (FR_ACT_TO_TBL, RT_TABLE_MAIN),
        };
        // struct fib_rule_hdr: family, dst len, src len, tos, table, two
        // reserved bytes, action, flags.
        let dst_len = to.map(|(_, len)| len).unwrap_or(0);
        m.buf
            .extend([libc::AF_INET as u8, dst_len, from.1, 0, table, 0, 0, action]);
        m.buf.extend(0u32.to_ne_bytes());
        m.attr(FRA_PRIORITY, &priority.to_ne_bytes());
        m.attr(FRA_SRC, &from.0.octets());
        if let Some((dst, _)) = to {
            m.attr(FRA_DST, &dst.octets());
        }
        exists_ok(self.call(m))
    }

    /// Sends `m` and waits for the kernel's acknowledgement.
    fn call(&mut self, mut m: Msg) -> nix::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let len = m.buf.len() as u32;
        m.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        m.buf[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        sendto(
            self.fd.as_raw_fd(),
            &m.buf,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )?;
        let mut buf = [0u8; 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            if n < 20 {
                return Err(Errno::EBADMSG);
            }
            let kind = u16::from_ne_bytes([buf[4], buf[5]]);
            let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
            if kind != NLMSG_ERROR || seq != self.seq {
                continue; // not our answer
            }
            // struct nlmsgerr: a negative errno, or 0 for the ACK.
            let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            return match err {
                0 => Ok(()),
                e => Err(Errno::from_raw(-e)),
            };
        }
    }
}

/// The index of link `name` in the calling thread's network namespace.
pub fn index_of(name: &str) -> nix::Result<u32> {
    nix::net::if_::if_nametoindex(name)
}
