//! The Kubernetes IP and CIDR libraries: `ip(s)`, `isIP(s)`, `ip.isCanonical(s)`, and on a `net.IP` `family()`,
//! `isUnspecified()`, `isLoopback()`, `isLinkLocalMulticast()`, `isLinkLocalUnicast()`, `isGlobalUnicast()`,
//! `string(ip)`; `cidr(s)`, `isCIDR(s)`, and on a `net.CIDR` `containsIP(ip | string)`, `containsCIDR(cidr |
//! string)`, `ip()`, `prefixLength()`, `masked()`, `string(cidr)`. As in Kubernetes, IPv4-mapped IPv6 addresses and
//! zones are refused, and IPv4 octets with leading zeros do not parse.

use std::net::IpAddr;
use std::sync::Arc;

use cel::common::types::{Type, STRING_TYPE};
use cel::common::value::CowVal;
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError, Value};

use crate::args::{out, take, text, value};

/// The CEL type name of addresses.
pub const IP_TYPE_NAME: &str = "net.IP";
/// The CEL type name of prefixes.
pub const CIDR_TYPE_NAME: &str = "net.CIDR";

/// An address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip(IpAddr);

/// A prefix: the address as written and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    ip: IpAddr,
    prefix: u8,
}

impl Opaque for Ip {
    fn runtime_type_name(&self) -> &str {
        IP_TYPE_NAME
    }
}

impl Opaque for Cidr {
    fn runtime_type_name(&self) -> &str {
        CIDR_TYPE_NAME
    }
}

/// Parses an address as Kubernetes does (no IPv4-mapped IPv6, no zone).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let ip: IpAddr = s.parse().ok()?;
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => None,
        ip => Some(ip),
    }
}

/// Parses `address/length`.
pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let (ip, prefix) = s.split_once('/')?;
    let ip = parse_ip(ip)?;
    if prefix.is_empty()
        || !prefix.bytes().all(|b| b.is_ascii_digit())
        || (prefix.len() > 1 && prefix.starts_with('0'))
    {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    (prefix <= max_prefix(ip)).then_some(Cidr { ip, prefix })
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(ip: IpAddr, prefix: u8) -> u128 {
    let width = u32::from(max_prefix(ip));
    let host = width - u32::from(prefix);
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    if host >= 128 {
        0
    } else {
        all & !((1u128 << host).wrapping_sub(1))
    }
}

fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(bits as u32)),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(bits)),
    }
}

impl Cidr {
    fn masked(self) -> Cidr {
        Cidr {
            ip: from_bits(self.ip, bits(self.ip) & mask(self.ip, self.prefix)),
            prefix: self.prefix,
        }
    }

    fn contains_ip(self, ip: IpAddr) -> bool {
        self.ip.is_ipv4() == ip.is_ipv4()
            && bits(self.ip) & mask(self.ip, self.prefix) == bits(ip) & mask(self.ip, self.prefix)
    }

    fn contains_cidr(self, other: Cidr) -> bool {
        other.prefix >= self.prefix && self.contains_ip(other.ip)
    }
}

fn is_link_local_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn is_link_local_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.octets()[0] == 0xff && v6.octets()[1] & 0x0f == 0x02,
    }
}

/// Go's `IsGlobalUnicast`: not unspecified, loopback, multicast, link-local unicast or the IPv4 broadcast address.
fn is_global_unicast(ip: IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || is_link_local_unicast(ip)
        || broadcast)
}

/// An address argument: a `net.IP`, or a string that parses as one.
fn ip_arg(function: &str, v: &CowVal<'_, '_>) -> Result<IpAddr, ExecutionError> {
    match value(v)? {
        Value::Opaque(o) => o.downcast_ref::<Ip>().map(|ip| ip.0),
        Value::String(s) => parse_ip(&s),
        _ => None,
    }
    .ok_or_else(|| ExecutionError::function_error(function, "expected an IP address"))
}

/// A prefix argument: a `net.CIDR`, or a string that parses as one.
fn cidr_arg(function: &str, v: &CowVal<'_, '_>) -> Result<Cidr, ExecutionError> {
    match value(v)? {
        Value::Opaque(o) => o.downcast_ref::<Cidr>().copied(),
        Value::String(s) => parse_cidr(&s),
        _ => None,
    }
    .ok_or_else(|| ExecutionError::function_error(function, "expected a CIDR"))
}

fn ip_value(ip: IpAddr) -> Value {
    Value::Opaque(Arc::new(Ip(ip)))
}

fn ip_fn<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    let s = text("ip", &s)?;
    let ip = parse_ip(&s).ok_or_else(|| {
        ExecutionError::function_error("ip", format!("IP Address {s:?} parse error"))
    })?;
    out(ip_value(ip))
}

fn is_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    out(Value::Bool(parse_ip(&text("isIP", &s)?).is_some()))
}

fn is_canonical<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    let s = text("ip.isCanonical", &s)?;
    let ip = parse_ip(&s).ok_or_else(|| {
        ExecutionError::function_error("ip.isCanonical", format!("IP Address {s:?} parse error"))
    })?;
    out(Value::Bool(ip.to_string() == s))
}

fn ip_predicate<'b, 'v>(
    function: &str,
    args: Vec<CowVal<'b, 'v>>,
    test: fn(IpAddr) -> bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [ip] = take(args)?;
    out(Value::Bool(test(ip_arg(function, &ip)?)))
}

fn family<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [ip] = take(args)?;
    out(Value::Int(if ip_arg("family", &ip)?.is_ipv4() {
        4
    } else {
        6
    }))
}

fn is_unspecified<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ip_predicate("isUnspecified", args, |ip| ip.is_unspecified())
}

fn is_loopback<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ip_predicate("isLoopback", args, |ip| ip.is_loopback())
}

fn link_local_multicast<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ip_predicate("isLinkLocalMulticast", args, is_link_local_multicast)
}

fn link_local_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ip_predicate("isLinkLocalUnicast", args, is_link_local_unicast)
}

fn global_unicast<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    ip_predicate("isGlobalUnicast", args, is_global_unicast)
}

fn ip_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [ip] = take(args)?;
    out(Value::String(ip_arg("string", &ip)?.to_string().into()))
}

fn cidr_fn<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    let s = text("cidr", &s)?;
    let c = parse_cidr(&s).ok_or_else(|| {
        ExecutionError::function_error("cidr", format!("network address {s:?} parse error"))
    })?;
    out(Value::Opaque(Arc::new(c)))
}

fn is_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s] = take(args)?;
    out(Value::Bool(parse_cidr(&text("isCIDR", &s)?).is_some()))
}

fn contains_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c, ip] = take(args)?;
    let c = cidr_arg("containsIP", &c)?;
    out(Value::Bool(c.contains_ip(ip_arg("containsIP", &ip)?)))
}

fn contains_cidr<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c, other] = take(args)?;
    let c = cidr_arg("containsCIDR", &c)?;
    out(Value::Bool(
        c.contains_cidr(cidr_arg("containsCIDR", &other)?),
    ))
}

fn cidr_ip<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c] = take(args)?;
    out(ip_value(cidr_arg("ip", &c)?.ip))
}

fn prefix_length<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c] = take(args)?;
    out(Value::Int(i64::from(cidr_arg("prefixLength", &c)?.prefix)))
}

fn masked<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c] = take(args)?;
    out(Value::Opaque(Arc::new(cidr_arg("masked", &c)?.masked())))
}

fn cidr_string<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [c] = take(args)?;
    let c = cidr_arg("string", &c)?;
    out(Value::String(format!("{}/{}", c.ip, c.prefix).into()))
}

/// Registers the types and their functions.
pub fn extension(env: &mut Env) -> Result<(), DeclarationError> {
    let ip = || Type::new_opaque_type(IP_TYPE_NAME);
    let cidr = || Type::new_opaque_type(CIDR_TYPE_NAME);
    env.add_type(ip())?;
    env.add_type(cidr())?;
    env.add_overload("ip", "ip(string)", vec![STRING_TYPE], ip_fn)?;
    env.add_overload("isIP", "isIP(string)", vec![STRING_TYPE], is_ip)?;
    env.add_overload(
        "ip.isCanonical",
        "ip.isCanonical(string)",
        vec![STRING_TYPE],
        is_canonical,
    )?;
    env.add_member_overload("family", "ip.family()", ip(), vec![], family)?;
    env.add_member_overload(
        "isUnspecified",
        "ip.isUnspecified()",
        ip(),
        vec![],
        is_unspecified,
    )?;
    env.add_member_overload("isLoopback", "ip.isLoopback()", ip(), vec![], is_loopback)?;
    env.add_member_overload(
        "isLinkLocalMulticast",
        "ip.isLinkLocalMulticast()",
        ip(),
        vec![],
        link_local_multicast,
    )?;
    env.add_member_overload(
        "isLinkLocalUnicast",
        "ip.isLinkLocalUnicast()",
        ip(),
        vec![],
        link_local_unicast,
    )?;
    env.add_member_overload(
        "isGlobalUnicast",
        "ip.isGlobalUnicast()",
        ip(),
        vec![],
        global_unicast,
    )?;
    env.add_overload("string", "string(ip)", vec![ip()], ip_string)?;
    env.add_overload("cidr", "cidr(string)", vec![STRING_TYPE], cidr_fn)?;
    env.add_overload("isCIDR", "isCIDR(string)", vec![STRING_TYPE], is_cidr)?;
    env.add_member_overload(
        "containsIP",
        "cidr.containsIP(ip)",
        cidr(),
        vec![ip()],
        contains_ip,
    )?;
    env.add_member_overload(
        "containsIP",
        "cidr.containsIP(string)",
        cidr(),
        vec![STRING_TYPE],
        contains_ip,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr.containsCIDR(cidr)",
        cidr(),
        vec![cidr()],
        contains_cidr,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr.containsCIDR(string)",
        cidr(),
        vec![STRING_TYPE],
        contains_cidr,
    )?;
    env.add_member_overload("ip", "cidr.ip()", cidr(), vec![], cidr_ip)?;
    env.add_member_overload(
        "prefixLength",
        "cidr.prefixLength()",
        cidr(),
        vec![],
        prefix_length,
    )?;
    env.add_member_overload("masked", "cidr.masked()", cidr(), vec![], masked)?;
    env.add_overload("string", "string(cidr)", vec![cidr()], cidr_string)
}

#[cfg(test)]
mod tests {
    use crate::{EvalError, Value};
    use serde_json::json;

    fn eval(src: &str) -> Result<Value, EvalError> {
        crate::eval_on(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"clusterIP": "10.96.0.10", "loadBalancerSourceRanges": ["10.0.0.0/8", "192.168.1.0/24"]}}),
            src,
        )
    }

    #[test]
    fn ips() {
        for src in [
            "isIP('127.0.0.1') && isIP('::1') && !isIP('1.2.3') && !isIP('::ffff:1.2.3.4') && !isIP('01.2.3.4')",
            "ip('127.0.0.1').family() == 4 && ip('fe80::1').family() == 6",
            "ip('127.0.0.1').isLoopback() && ip('0.0.0.0').isUnspecified() && ip('::').isUnspecified()",
            "ip('169.254.1.1').isLinkLocalUnicast() && ip('fe80::1').isLinkLocalUnicast()",
            "ip('224.0.0.1').isLinkLocalMulticast() && ip('ff02::1').isLinkLocalMulticast()",
            "ip(object.spec.clusterIP).isGlobalUnicast() && !ip('255.255.255.255').isGlobalUnicast()",
            "ip.isCanonical('2001:db8::1') && !ip.isCanonical('2001:DB8::1')",
            "string(ip('2001:db8:0:0:0:0:0:1')) == '2001:db8::1' && ip('10.0.0.1') == ip('10.0.0.1')",
        ] {
            assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        }
        let e = eval("ip('nope')").expect_err("bad ip");
        assert!(e.to_string().contains("parse error"), "{e}");
    }

    #[test]
    fn cidrs() {
        for src in [
            "isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.0/33') && !isCIDR('10.0.0.0') && !isCIDR('10.0.0.0/08')",
            "cidr('10.0.0.0/8').containsIP(ip('10.1.2.3')) && cidr('10.0.0.0/8').containsIP('10.1.2.3')",
            "!cidr('10.0.0.0/8').containsIP('11.0.0.1') && !cidr('10.0.0.0/8').containsIP('::1')",
            "cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16') && !cidr('10.1.0.0/16').containsCIDR('10.0.0.0/8')",
            "cidr('10.1.2.3/8').masked() == cidr('10.0.0.0/8') && cidr('10.1.2.3/8').ip() == ip('10.1.2.3')",
            "cidr('2001:db8::/32').prefixLength() == 32 && cidr('2001:db8::/32').containsIP('2001:db8::5')",
            "string(cidr('10.1.2.3/8').masked()) == '10.0.0.0/8'",
            "object.spec.loadBalancerSourceRanges.all(r, cidr('10.0.0.0/8').containsCIDR(r) || r == '192.168.1.0/24')",
            "cidr('0.0.0.0/0').containsIP('8.8.8.8') && cidr('::/0').containsIP('::1')",
        ] {
            assert_eq!(eval(src), Ok(Value::Bool(true)), "{src}");
        }
    }
}
