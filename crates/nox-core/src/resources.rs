//! CPU, memory and disk requests as users write them, and their resolution against the host.
//!
//! Syntax (checked when a flag or config value is parsed):
//! - a count or size: `--cpus 2`, `--memory 2G` / `512M` / `1024` (bare = MiB, as the original
//!   tool's `--ram` was), `--disk 10G` / `10` (bare = GiB);
//! - a share of the host: `50%`, or a number strictly between 0 and 1 (`0.5`). For cpus, `1`
//!   is one CPU, not the whole host.
//!
//! Limits (checked by [`resolve`](CpuRequest::resolve) against [`Capacity`]): zero, negative
//! and more-than-the-host-has are refused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::host::Capacity;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// A share of something the host has, kept as the percentage the user meant, in (0, 100].
/// `0.07` is read as exactly `7%` (its decimal point moved in the text, not multiplied in
/// floating point), so printing a share and reading it back gives the same share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    percent: f64,
}

impl Share {
    pub fn fraction(self) -> f64 {
        self.percent / 100.0
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Rust prints the shortest decimal that reads back as the same f64, and never in
        // exponent form: `50%`, `12.5%`.
        write!(f, "{}%", self.percent)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CpuRequest {
    Count(u32),
    Share(Share),
}

/// Memory or disk: an absolute size in bytes, or a share of what the host has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SizeRequest {
    Bytes(u64),
    Share(Share),
}

/// A memory request; a bare number is MiB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryRequest(pub SizeRequest);

/// A disk request; a bare number is GiB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskRequest(pub SizeRequest);

fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidResource {
        what,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A number as written (`1.5`): its digits and at most one '.', and its value.
struct Number<'a> {
    text: &'a str,
    value: f64,
}

impl Number<'_> {
    fn is_whole(&self) -> bool {
        !self.text.contains('.')
    }

    /// The same number written a hundred times larger: `0.075` -> `7.5`, exactly, by moving
    /// the decimal point in the text.
    fn times_100(&self) -> f64 {
        let (int, frac) = self.text.split_once('.').unwrap_or((self.text, ""));
        let (moved, rest) = frac.split_at(frac.len().min(2));
        let shifted = format!("{int}{moved:0<2}.{rest}0");
        // Digits and one '.', with a digit on each side: always a number.
        shifted.parse().unwrap_or(self.value * 100.0)
    }
}

/// Splits `1.5G` into (1.5, "G"). The number may not be signed or empty.
fn split_number<'a>(what: &'static str, raw: &'a str) -> Result<(Number<'a>, &'a str)> {
    let s = raw.trim();
    if s.starts_with('-') {
        return Err(invalid(what, raw, "it must be positive"));
    }
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (text, unit) = s.split_at(end);
    let value: f64 = text
        .parse()
        .map_err(|_| invalid(what, raw, "expected a number, optionally with a unit or %"))?;
    if !value.is_finite() {
        return Err(invalid(what, raw, "expected a finite number"));
    }
    Ok((Number { text, value }, unit.trim()))
}

fn parse_share(what: &'static str, raw: &str, n: &Number<'_>, unit: &str) -> Result<Option<Share>> {
    if unit == "%" {
        if n.value <= 0.0 || n.value > 100.0 {
            return Err(invalid(
                what,
                raw,
                "a share must be above 0% and at most 100%",
            ));
        }
        return Ok(Some(Share { percent: n.value }));
    }
    if unit.is_empty() && n.value > 0.0 && n.value < 1.0 {
        return Ok(Some(Share {
            percent: n.times_100(),
        }));
    }
    Ok(None)
}

fn parse_size(what: &'static str, raw: &str, bare_unit: u64) -> Result<SizeRequest> {
    let (n, unit) = split_number(what, raw)?;
    if let Some(share) = parse_share(what, raw, &n, unit)? {
        return Ok(SizeRequest::Share(share));
    }
    let mult = match unit.to_ascii_uppercase().as_str() {
        "" => bare_unit,
        "B" => 1,
        "K" | "KB" | "KI" | "KIB" => KIB,
        "M" | "MB" | "MI" | "MIB" => MIB,
        "G" | "GB" | "GI" | "GIB" => GIB,
        "T" | "TB" | "TI" | "TIB" => TIB,
        _ => {
            return Err(invalid(
                what,
                raw,
                format!("unknown unit {unit:?}; use K, M, G, T or %"),
            ))
        }
    };
    let too_large = || invalid(what, raw, "it is larger than any host");
    // Whole numbers are counted exactly; only a fraction (`1.5G`) goes through f64.
    let bytes = if n.is_whole() {
        let whole: u64 = n.text.parse().map_err(|_| too_large())?;
        whole.checked_mul(mult).ok_or_else(too_large)?
    } else {
        let bytes = n.value * mult as f64;
        // 2^64 is the first f64 no u64 holds.
        if bytes >= u64::MAX as f64 {
            return Err(too_large());
        }
        bytes as u64
    };
    if bytes == 0 {
        return Err(invalid(what, raw, "it must be more than zero"));
    }
    Ok(SizeRequest::Bytes(bytes))
}

impl FromStr for CpuRequest {
    type Err = Error;
    fn from_str(raw: &str) -> Result<Self> {
        let (n, unit) = split_number("cpus", raw)?;
        if let Some(share) = parse_share("cpus", raw, &n, unit)? {
            return Ok(CpuRequest::Share(share));
        }
        let n = n.value;
        if !unit.is_empty() {
            return Err(invalid(
                "cpus",
                raw,
                "expected a whole number of CPUs or a share",
            ));
        }
        if n == 0.0 {
            return Err(invalid("cpus", raw, "it must be at least 1"));
        }
        if n.fract() != 0.0 || n > u32::MAX as f64 {
            return Err(invalid(
                "cpus",
                raw,
                "a count above 1 must be a whole number; write a share as 50% or 0.5",
            ));
        }
        Ok(CpuRequest::Count(n as u32))
    }
}

impl FromStr for MemoryRequest {
    type Err = Error;
    fn from_str(raw: &str) -> Result<Self> {
        parse_size("memory", raw, MIB).map(MemoryRequest)
    }
}

impl FromStr for DiskRequest {
    type Err = Error;
    fn from_str(raw: &str) -> Result<Self> {
        parse_size("disk", raw, GIB).map(DiskRequest)
    }
}

impl CpuRequest {
    pub fn is_share(&self) -> bool {
        matches!(self, CpuRequest::Share(_))
    }

    /// The number of vCPUs this request means on this host.
    pub fn resolve(self, host: &Capacity) -> Result<u32> {
        match self {
            CpuRequest::Count(n) if n > host.cpus => Err(invalid(
                "cpus",
                &n.to_string(),
                format!("this host has {} CPUs", host.cpus),
            )),
            CpuRequest::Count(n) => Ok(n),
            // A share always yields at least one CPU: "10%" of a 2-CPU host is still a machine.
            CpuRequest::Share(s) => {
                Ok(((host.cpus as f64 * s.fraction()).round() as u32).clamp(1, host.cpus.max(1)))
            }
        }
    }
}

fn resolve_size(what: &'static str, req: SizeRequest, available: u64, of: &str) -> Result<u64> {
    let bytes = match req {
        SizeRequest::Bytes(b) => b,
        SizeRequest::Share(s) => (available as f64 * s.fraction()) as u64,
    };
    if bytes > available {
        return Err(invalid(
            what,
            &format_bytes(bytes),
            format!("this host has {} of {of}", format_bytes(available)),
        ));
    }
    if bytes < MIB {
        return Err(invalid(
            what,
            &format_bytes(bytes),
            "it must be at least 1M",
        ));
    }
    // Hypervisors and cgroups work in MiB; round down so a share never exceeds the host.
    Ok(bytes / MIB * MIB)
}

impl MemoryRequest {
    pub fn is_share(&self) -> bool {
        matches!(self.0, SizeRequest::Share(_))
    }

    /// Bytes of memory, a whole number of MiB, no more than the host's total.
    pub fn resolve(self, host: &Capacity) -> Result<u64> {
        resolve_size("memory", self.0, host.memory_bytes, "memory")
    }
}

impl DiskRequest {
    pub fn is_share(&self) -> bool {
        matches!(self.0, SizeRequest::Share(_))
    }

    /// Bytes of disk, a whole number of MiB, no more than the free space where disks live.
    pub fn resolve(self, host: &Capacity) -> Result<u64> {
        resolve_size("disk", self.0, host.disk_free_bytes, "free disk space")
    }
}

/// Sizes as people read them, one decimal: `1.5 GiB`, `312 B`. (For sizes that must stay
/// exact, [`format_bytes`].)
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `2147483648` -> `2G`; keeps exact values exact and falls back to MiB.
pub fn format_bytes(b: u64) -> String {
    for (unit, size) in [("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)] {
        if b >= size && b % size == 0 {
            return format!("{}{unit}", b / size);
        }
    }
    if b >= MIB {
        return format!("{:.1}M", b as f64 / MIB as f64);
    }
    format!("{b}B")
}

impl fmt::Display for CpuRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuRequest::Count(n) => write!(f, "{n}"),
            CpuRequest::Share(s) => write!(f, "{s}"),
        }
    }
}

/// `2147483648` -> `2G`, `1536` -> `1536B`: the largest unit that keeps the value exact, so
/// it reads back as the same number of bytes.
fn exact_bytes(b: u64) -> String {
    for (unit, size) in [("T", TIB), ("G", GIB), ("M", MIB), ("K", KIB)] {
        if b >= size && b % size == 0 {
            return format!("{}{unit}", b / size);
        }
    }
    format!("{b}B")
}

impl fmt::Display for SizeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeRequest::Bytes(b) => f.write_str(&exact_bytes(*b)),
            SizeRequest::Share(s) => write!(f, "{s}"),
        }
    }
}

impl fmt::Display for MemoryRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for DiskRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// In TOML a resource may be a string (`"2G"`, `"50%"`), an integer (`2`) or a float (`0.5`);
/// all go through the same parser as the flags, so the file and the CLI agree.
macro_rules! serde_via_str {
    ($ty:ty, $expecting:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(
                        self,
                        v: &str,
                    ) -> std::result::Result<$ty, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<$ty, E> {
                        self.visit_str(&v.to_string())
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

serde_via_str!(CpuRequest, "a CPU count (2) or a share (\"50%\", 0.5)");
serde_via_str!(
    MemoryRequest,
    "a size (\"2G\", \"512M\", 1024 for MiB) or a share (\"50%\", 0.5)"
);
serde_via_str!(
    DiskRequest,
    "a size (\"10G\", 10 for GiB) or a share (\"50%\", 0.5)"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Capacity {
        Capacity {
            cpus: 4,
            memory_bytes: 8 * GIB,
            disk_free_bytes: 100 * GIB,
        }
    }

    #[test]
    fn cpus() {
        let h = host();
        let cases: &[(&str, Result<u32, &str>)] = &[
            ("1", Ok(1)),
            ("2", Ok(2)),
            ("4", Ok(4)),
            (" 3 ", Ok(3)),
            ("50%", Ok(2)),
            ("100%", Ok(4)),
            ("0.5", Ok(2)),
            ("0.25", Ok(1)),
            ("0.01", Ok(1)),
            ("1%", Ok(1)),
            ("5", Err("this host has 4 CPUs")),
            ("0", Err("at least 1")),
            ("0%", Err("above 0%")),
            ("101%", Err("at most 100%")),
            ("-1", Err("positive")),
            ("-0.5", Err("positive")),
            ("1.5", Err("whole number")),
            ("2G", Err("whole number of CPUs")),
            ("", Err("expected a number")),
            ("two", Err("expected a number")),
            ("1.2.3", Err("expected a number")),
        ];
        for (raw, want) in cases {
            let got = raw.parse::<CpuRequest>().and_then(|r| r.resolve(&h));
            match (want, &got) {
                (Ok(n), Ok(g)) => assert_eq!(n, g, "{raw:?}"),
                (Err(msg), Err(e)) => {
                    assert!(e.is_bad_input(), "{raw:?}");
                    assert!(e.to_string().contains(msg), "{raw:?}: {e}");
                }
                _ => panic!("{raw:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn memory() {
        let h = host();
        let cases: &[(&str, Result<u64, &str>)] = &[
            ("1024", Ok(GIB)),
            ("512", Ok(512 * MIB)),
            ("512M", Ok(512 * MIB)),
            ("512MiB", Ok(512 * MIB)),
            ("2G", Ok(2 * GIB)),
            ("2g", Ok(2 * GIB)),
            ("1.5G", Ok(1536 * MIB)),
            ("8G", Ok(8 * GIB)),
            ("50%", Ok(4 * GIB)),
            ("0.5", Ok(4 * GIB)),
            ("0.25", Ok(2 * GIB)),
            ("9G", Err("this host has 8G of memory")),
            ("0", Err("more than zero")),
            ("0M", Err("more than zero")),
            ("-2G", Err("positive")),
            ("2X", Err("unknown unit")),
            ("512K", Err("at least 1M")),
            ("150%", Err("at most 100%")),
        ];
        for (raw, want) in cases {
            let got = raw.parse::<MemoryRequest>().and_then(|r| r.resolve(&h));
            match (want, &got) {
                (Ok(n), Ok(g)) => assert_eq!(n, g, "{raw:?}"),
                (Err(msg), Err(e)) => {
                    assert!(e.is_bad_input(), "{raw:?}");
                    assert!(e.to_string().contains(msg), "{raw:?}: {e}");
                }
                _ => panic!("{raw:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn disk() {
        let h = host();
        let cases: &[(&str, Result<u64, &str>)] = &[
            ("10", Ok(10 * GIB)),
            ("10G", Ok(10 * GIB)),
            ("512M", Ok(512 * MIB)),
            ("1T", Err("this host has 100G of free disk space")),
            ("101", Err("this host has 100G")),
            ("10%", Ok(10 * GIB)),
            ("0.5", Ok(50 * GIB)),
            ("0", Err("more than zero")),
            ("-10G", Err("positive")),
        ];
        for (raw, want) in cases {
            let got = raw.parse::<DiskRequest>().and_then(|r| r.resolve(&h));
            match (want, &got) {
                (Ok(n), Ok(g)) => assert_eq!(n, g, "{raw:?}"),
                (Err(msg), Err(e)) => assert!(e.to_string().contains(msg), "{raw:?}: {e}"),
                _ => panic!("{raw:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for raw in ["2", "50%", "12.5%"] {
            let r: CpuRequest = raw.parse().unwrap();
            assert_eq!(r.to_string().parse::<CpuRequest>().unwrap(), r, "{raw}");
        }
        for raw in ["2G", "512M", "1536M", "25%"] {
            let r: MemoryRequest = raw.parse().unwrap();
            assert_eq!(r.to_string(), raw);
        }
        assert_eq!("0.5".parse::<MemoryRequest>().unwrap().to_string(), "50%");
        assert_eq!("1024".parse::<MemoryRequest>().unwrap().to_string(), "1G");
        assert_eq!("10".parse::<DiskRequest>().unwrap().to_string(), "10G");
        // A fraction is read in decimal, so it prints as the percentage it is.
        assert_eq!("0.07".parse::<CpuRequest>().unwrap().to_string(), "7%");
        assert_eq!(
            "0.075".parse::<MemoryRequest>().unwrap().to_string(),
            "7.5%"
        );
        assert_eq!(".5".parse::<DiskRequest>().unwrap().to_string(), "50%");
        // Sizes that are no whole K print in bytes, which read back.
        for (raw, bytes) in [("1536B", 1536), ("1.0000001K", 1024), ("1.5M", 1536 * KIB)] {
            let r: MemoryRequest = raw.parse().unwrap();
            assert_eq!(r, MemoryRequest(SizeRequest::Bytes(bytes)), "{raw}");
            assert_eq!(r.to_string().parse::<MemoryRequest>().unwrap(), r, "{raw}");
        }
        let odd = MemoryRequest(SizeRequest::Bytes(MIB + 1));
        assert_eq!(odd.to_string(), "1048577B");
    }

    #[test]
    fn huge_values_are_refused_not_wrapped() {
        for raw in [
            "18446744073709551616B",
            "16777216T",
            "99999999999999999999999",
            "17179869184G",
            "16777216.5T",
        ] {
            let e = raw.parse::<DiskRequest>().unwrap_err();
            assert!(e.to_string().contains("larger than any host"), "{raw}: {e}");
            assert!(e.is_bad_input());
        }
        // The largest whole count of bytes is exact.
        assert_eq!(
            "18446744073709551615B".parse::<DiskRequest>().unwrap(),
            DiskRequest(SizeRequest::Bytes(u64::MAX))
        );
        assert!("99999999999"
            .parse::<CpuRequest>()
            .unwrap_err()
            .is_bad_input());
    }

    #[test]
    fn a_host_reporting_no_cpus_gets_an_error_or_one_cpu_never_a_panic() {
        let none = Capacity {
            cpus: 0,
            memory_bytes: 0,
            disk_free_bytes: 0,
        };
        assert_eq!(
            "50%".parse::<CpuRequest>().unwrap().resolve(&none).unwrap(),
            1
        );
        assert!("1".parse::<CpuRequest>().unwrap().resolve(&none).is_err());
        assert!("50%"
            .parse::<MemoryRequest>()
            .unwrap()
            .resolve(&none)
            .is_err());
    }

    proptest::proptest! {
        /// Every size prints in a form that reads back as the same number of bytes.
        #[test]
        fn sizes_read_back_as_written(b in 1u64..) {
            let m = MemoryRequest(SizeRequest::Bytes(b));
            proptest::prop_assert_eq!(m.to_string().parse::<MemoryRequest>().unwrap(), m);
            let d = DiskRequest(SizeRequest::Bytes(b));
            proptest::prop_assert_eq!(d.to_string().parse::<DiskRequest>().unwrap(), d);
        }

        /// Every share, however written (`12.5%` or `0.125`), prints as a percentage that
        /// reads back as the same share.
        #[test]
        fn shares_read_back_as_written(whole in 0u32..100, frac in "[0-9]{0,6}") {
            let percent = if frac.is_empty() { format!("{whole}") } else { format!("{whole}.{frac}") };
            let parsed = format!("{percent}%").parse::<CpuRequest>();
            let Ok(c) = parsed else {
                // Only 0% is refused among these.
                proptest::prop_assert!(percent.parse::<f64>().unwrap() == 0.0);
                return Ok(());
            };
            proptest::prop_assert_eq!(c.to_string().parse::<CpuRequest>().unwrap(), c);
            let m: MemoryRequest = format!("{percent}%").parse().unwrap();
            proptest::prop_assert_eq!(m.to_string().parse::<MemoryRequest>().unwrap(), m);
            // The same share written as a fraction of one (`0.125`): read as exactly 12.5%.
            if whole == 0 {
                let f: CpuRequest = format!("0.{frac}").parse().unwrap();
                proptest::prop_assert_eq!(f.to_string().parse::<CpuRequest>().unwrap(), f);
            }
        }

        /// Every CPU count reads back as itself.
        #[test]
        fn cpu_counts_read_back_as_written(n in 1u32..) {
            let c = CpuRequest::Count(n);
            proptest::prop_assert_eq!(c.to_string().parse::<CpuRequest>().unwrap(), c);
        }
    }
}
