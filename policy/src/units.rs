//! Sizes and durations as operators write them ("512MiB", "10m") and as
//! messages show them. Whatever `fmt_*` prints, `parse_*` reads back.

const SIZE_UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("K", 1 << 10),
    ("MiB", 1 << 20),
    ("M", 1 << 20),
    ("GiB", 1 << 30),
    ("G", 1 << 30),
    ("TiB", 1 << 40),
    ("T", 1 << 40),
];

const DURATION_UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)];

/// Splits "512 MiB" into 512 and "MiB"; `None` without leading digits.
fn split_number(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let number = s[..end].parse().ok()?;
    Some((number, s[end..].trim_start()))
}

fn parse_with(s: &str, units: &[(&str, u64)]) -> Option<u64> {
    let (number, unit) = split_number(s.trim())?;
    let (_, scale) = units.iter().find(|(name, _)| *name == unit)?;
    number.checked_mul(*scale)
}

/// Parses a size string with a binary unit into bytes.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    parse_with(s, &SIZE_UNITS).ok_or_else(|| {
        format!(
            "{:?} is not a size: write an integer number of bytes or a string like \"512MiB\" \
             (units B, KiB, MiB, GiB, TiB; K, M, G, T are binary too)",
            crate::request::clip(s)
        )
    })
}

/// Parses a duration string ("500ms", "30s", "10m", "2h") into milliseconds.
pub(crate) fn parse_duration_ms(s: &str) -> Result<u64, String> {
    parse_with(s, &DURATION_UNITS).ok_or_else(|| {
        format!(
            "{:?} is not a duration: write an integer number of seconds or a string like \
             \"500ms\", \"30s\", \"10m\" or \"2h\"",
            crate::request::clip(s)
        )
    })
}

/// Formats bytes in the largest binary unit that divides them exactly.
pub(crate) fn fmt_bytes(n: u64) -> String {
    fmt_with(
        n,
        &[
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ],
        "B",
    )
}

/// Formats milliseconds in the largest unit that divides them exactly.
pub(crate) fn fmt_ms(n: u64) -> String {
    fmt_with(n, &[("h", 3_600_000), ("m", 60_000), ("s", 1000)], "ms")
}

fn fmt_with(n: u64, units: &[(&str, u64)], base: &str) -> String {
    units
        .iter()
        .find(|(_, scale)| n != 0 && n % scale == 0)
        .map_or_else(
            || format!("{n}{base}"),
            |(unit, scale)| format!("{}{unit}", n / scale),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn sizes_parse_binary_units_and_reject_the_rest() {
        let cases: &[(&str, Result<u64, ()>)] = &[
            ("1GiB", Ok(1 << 30)),
            ("1G", Ok(1 << 30)),
            ("512 MiB", Ok(512 << 20)),
            ("7B", Ok(7)),
            ("3K", Ok(3072)),
            ("2TiB", Ok(2 << 40)),
            ("1GB", Err(())),
            ("1.5GiB", Err(())),
            ("GiB", Err(())),
            ("12", Err(())),
            ("-1MiB", Err(())),
            ("99999999999TiB", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input).map_err(|_| ()), *want, "{input}");
        }
    }

    #[test]
    fn durations_parse_to_milliseconds() {
        let cases: &[(&str, Result<u64, ()>)] = &[
            ("500ms", Ok(500)),
            ("30s", Ok(30_000)),
            ("10m", Ok(600_000)),
            ("2h", Ok(7_200_000)),
            ("10", Err(())),
            ("1d", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration_ms(input).map_err(|_| ()), *want, "{input}");
        }
    }

    #[test]
    fn formatted_values_read_back() {
        for n in [1, 1023, 1024, 1536 << 20, 1 << 30, 3 << 40] {
            assert_eq!(parse_size(&fmt_bytes(n)), Ok(n), "{n}");
        }
        for n in [1, 1500, 30_000, 600_000, 7_200_000] {
            assert_eq!(parse_duration_ms(&fmt_ms(n)), Ok(n), "{n}");
        }
        assert_eq!(fmt_bytes(1536 << 20), "1536MiB");
        assert_eq!(fmt_ms(90_000), "90s");
    }
}
